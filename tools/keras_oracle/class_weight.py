import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
rs=np.random.RandomState(0); X=rs.randn(12,4).astype("float32"); yl=np.array([0,1,2,1,0,2,1,1,0,2,2,1])
W=np.array([[0.3,-0.1,0.2],[-0.2,0.4,0.0],[0.1,0.1,-0.3],[0.5,-0.5,0.2]],"float32")
for name, y, loss in (("sparse", yl, "sparse_categorical_crossentropy"), ("onehot", np.eye(3, dtype="float32")[yl], "categorical_crossentropy")):
    m=keras.Sequential([keras.Input((4,)),layers.Dense(3,activation="softmax")]); m.set_weights([W,np.zeros(3,"float32")])
    m.compile(keras.optimizers.SGD(0.1), loss)
    h=m.fit(X,y,batch_size=12,epochs=2,verbose=0,shuffle=False,class_weight={0:1.0,1:5.0,2:0.5})
    print(name, "loss", h.history["loss"], "kernel[0]", m.get_weights()[0][0].tolist())
