import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
X=np.array([[1.0,2.0],[3.0,-1.0],[0.5,0.5]],"float32"); Y=np.array([[10.0,0.0],[-5.0,2.0],[1.0,1.0]],"float32")
W=np.array([[0.2,-0.3],[0.4,0.1]],"float32"); b=np.zeros(2,"float32")
for kw in ({"clipnorm":0.5},{"global_clipnorm":0.5},{"clipvalue":0.1},{}):
    m=keras.Sequential([keras.Input((2,)),layers.Dense(2)]); m.set_weights([W,b])
    m.compile(keras.optimizers.SGD(1.0,**kw),"mse"); m.fit(X,Y,batch_size=3,epochs=1,verbose=0,shuffle=False)
    k,bb=m.get_weights(); print(kw, k.ravel().tolist(), bb.tolist())
