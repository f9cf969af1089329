import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras, tempfile
from keras import layers
rs=np.random.RandomState(0); X=rs.rand(8,3).astype("float32"); Y=rs.rand(8,2).astype("float32")
calls=[]
class Rec(keras.callbacks.Callback):
    pass
for h in ["on_train_begin","on_train_end","on_epoch_begin","on_epoch_end","on_train_batch_begin","on_train_batch_end","on_test_begin","on_test_end","on_test_batch_begin","on_test_batch_end","on_predict_begin","on_predict_end","on_predict_batch_begin","on_predict_batch_end","on_batch_begin","on_batch_end"]:
    def mk(h):
        def f(self,*a,**k):
            logs = a[-1] if a else k.get("logs")
            calls.append((h,)+tuple(x for x in a[:-1]) + (type(logs).__name__,))
        return f
    setattr(Rec,h,mk(h))
keras.utils.set_random_seed(0)
m=keras.Sequential([keras.Input((3,)),layers.Dense(2)]); m.compile("sgd","mse")
r=Rec()
m.fit(X,Y,batch_size=4,epochs=2,verbose=0,validation_data=(X[:4],Y[:4]),callbacks=[r])
print("FIT", calls); calls.clear()
m.evaluate(X,Y,batch_size=4,verbose=0,callbacks=[r]); print("EVAL", calls); calls.clear()
m.predict(X,batch_size=4,verbose=0,callbacks=[r]); print("PRED", calls); calls.clear()
print("params", r.params)
d=tempfile.mkdtemp(); f=os.path.join(d,"log.csv")
m.fit(X,Y,batch_size=4,epochs=2,verbose=0,callbacks=[keras.callbacks.CSVLogger(f)])
print("CSV", repr(open(f).read()))
m.fit(X,Y,batch_size=4,epochs=2,verbose=0,validation_data=(X[:4],Y[:4]),callbacks=[keras.callbacks.CSVLogger(f, separator=";", append=True)])
print("CSV2", repr(open(f).read()))
h=m.fit(X,Y,batch_size=4,epochs=3,verbose=0,callbacks=[keras.callbacks.LearningRateScheduler(lambda e, lr: 0.1/(e+1))])
print("LRS", h.history)
h=m.fit(X,Y,batch_size=4,epochs=2,verbose=0,validation_data=(X[:4],Y[:4]),callbacks=[keras.callbacks.ReduceLROnPlateau(patience=0, factor=0.5, min_delta=10)])
print("RLR", {k: v for k, v in h.history.items()})
