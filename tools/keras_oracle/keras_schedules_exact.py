"""Oracle for tests/optim/test_keras_schedules_exact.py: Keras 3's schedules at the points the
tests pin. Run: KERAS_BACKEND=torch /tmp/kenv/bin/python tools/keras_oracle/keras_schedules_exact.py"""
import keras
from keras.optimizers import schedules as ks

print("keras", keras.__version__)
cd = ks.CosineDecay(0.1, 10, warmup_target=0.2)  # default warmup_steps
print("cosine default warmup_steps", cd.get_config()["warmup_steps"], float(cd(0)))
cd = ks.CosineDecay(0.1, 10, warmup_target=0.2, warmup_steps=0)
print("cosine warmup_steps=0 at 0", float(cd(0)))
cd = ks.CosineDecay(0.1, 10, warmup_target=0.5, warmup_steps=4)
print("cosine warm-up at 1, 2", float(cd(1)), float(cd(2)))
cd = ks.CosineDecay(1.0, 10, alpha=0.5, warmup_target=0.2, warmup_steps=2)
print("cosine alpha after warm-up at 7, 12, 40", float(cd(7)), float(cd(12)), float(cd(40)))
pd = ks.PolynomialDecay(0.1, 10)
print("polynomial default end", pd.get_config()["end_learning_rate"], float(pd(5)), float(pd(10)))
