import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
rs=np.random.RandomState(0); X=rs.randn(12,4).astype("float32"); yl=np.array([0,1,2,1,0,2,1,1,0,2,2,1])
sw=np.linspace(0.1, 2.0, 12).astype("float32")
W=np.array([[0.3,-0.1,0.2],[-0.2,0.4,0.0],[0.1,0.1,-0.3],[0.5,-0.5,0.2]],"float32")
m=keras.Sequential([keras.Input((4,)),layers.Dense(3,activation="softmax")]); m.set_weights([W,np.zeros(3,"float32")])
m.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
print("eval weighted", m.evaluate(X, yl, sample_weight=sw, batch_size=12, verbose=0))
h=m.fit(X,yl,batch_size=12,epochs=2,verbose=0,shuffle=False,sample_weight=sw)
print("fit loss", h.history["loss"], "kernel[0]", m.get_weights()[0][0].tolist())
m.set_weights([W,np.zeros(3,"float32")])
h=m.fit(X,yl,batch_size=12,epochs=1,verbose=0,shuffle=False,validation_data=(X[:6], yl[:6], sw[:6]))
print("val weighted", h.history["val_loss"])
