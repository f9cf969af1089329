import os; os.environ["KERAS_BACKEND"]="torch"
import numpy as np, keras
S = keras.optimizers.schedules
steps = [0, 1, 5, 10, 25, 100]
cases = {
 "exp": S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5),
 "exp_stair": S.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True),
 "inv": S.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5),
 "inv_stair": S.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True),
 "piece": S.PiecewiseConstantDecay([5, 10], [1.0, 0.5, 0.1]),
 "poly": S.PolynomialDecay(0.1, decay_steps=20, end_learning_rate=0.01, power=2.0),
 "poly_cycle": S.PolynomialDecay(0.1, decay_steps=20, end_learning_rate=0.01, power=1.0, cycle=True),
 "cos": S.CosineDecay(0.1, decay_steps=20, alpha=0.1),
 "cos_warm": S.CosineDecay(0.0, decay_steps=20, warmup_target=0.2, warmup_steps=10),
}
for k, s in cases.items():
    print(k, [round(float(keras.ops.convert_to_numpy(s(st))), 8) for st in steps])
# in fit: lr seen per step
class Rec(keras.callbacks.Callback):
    def __init__(s): super().__init__(); s.lrs=[]
    def on_train_batch_begin(s, b, logs=None): s.lrs.append(round(float(keras.ops.convert_to_numpy(s.model.optimizer.learning_rate)), 8))
m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]); r = Rec()
m.compile(keras.optimizers.SGD(S.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)), "mse")
m.fit(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"), batch_size=2, epochs=2, verbose=0, callbacks=[r])
print("fit lrs", r.lrs)
