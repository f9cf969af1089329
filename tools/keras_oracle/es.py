import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
from keras import layers
rs=np.random.RandomState(0); X=rs.rand(32,3).astype("float32"); Y=rs.rand(32,2).astype("float32")
cases = [
 ("val_loss","auto",[5, 4, 3, 3.5, 3.2, 3.1, 1, 1],2,0.0,20),
 ("val_loss","auto",[3, 1, 2, 2, 2],1,0.0,10),
 ("val_score","max",[1.0, 3.0, 2.0, 2.5, 9.0],0,0.0,5),
 ("val_accuracy","auto",[0.5, 0.6, 0.4, 0.3, 0.9],0,0.0,5),
 ("val_accuracy","min",[0.5, 0.4, 0.6, 0.3, 0.9],0,0.0,5),
 ("val_loss","auto",[3.0, 2.0, 2.5, 2.6, 1.0],0,0.0,5),
 ("val_score","min",[3.0, 2.0, 2.5, 2.6, 1.0],0,0.0,5),
 ("val_score","max",[3.0, 2.0, 2.5, 2.6, 1.0],0,0.0,5),
 ("val_loss","auto",[3.0, 2.4, 2.1, 1.0, 0.9, 0.8],0,0.5,6),
 ("val_loss","auto",[4.0, 3.0, 2.0, 1.0],0,0.0,4),
 ("val_score","min",[1.0, 1.0, 0.5],0,0.0,3),
 ("val_score","max",[1.0, 1.0, 2.0],0,0.0,3),
 ("val_score","max",[1.0, 1.2, 5.0],0,0.5,3),
 ("val_loss","auto",[float("nan")]*5,1,0.0,5),
]
for p in range(5):
    cases.append(("val_loss","auto",[1.0,0.5,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4],p,0.0,10))
for mon, mode, vals, pat, md, ep in cases:
    class S(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None): logs[mon] = vals[epoch]
    class Snap(keras.callbacks.Callback):
        def __init__(s): super().__init__(); s.w=[]
        def on_epoch_end(s, epoch, logs=None): s.w.append(s.model.get_weights()[0].copy())
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), layers.Dense(2)]); m.compile("sgd","mse", metrics=["accuracy"] if "acc" in mon else None)
    es = keras.callbacks.EarlyStopping(monitor=mon, mode=mode, patience=pat, min_delta=md, restore_best_weights=True)
    sn=Snap()
    h = m.fit(X, Y, epochs=ep, verbose=0, callbacks=[S(), sn, es])
    final = m.get_weights()[0]
    restored = [i for i, w in enumerate(sn.w) if np.array_equal(w, final)]
    print(mon, mode, vals[:6], "patience", pat, "min_delta", md, "-> epochs", len(h.history["loss"]), "stopped_epoch", es.stopped_epoch, "best", es.best, "best_epoch", es.best_epoch, "restored_epoch", restored)
