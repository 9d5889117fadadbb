"""A filter: each reading emits zero, one or two alerts through an Outbox."""

import ringgen as rg
from ringgen.types import f32, i32, i64


@rg.message
class Reading:
    sensor: i32
    seq: i64
    value: f32


@rg.message
class Alert:
    sensor: i32
    seq: i64
    level: i32  # 1 = high, 2 = critical, -1 = low
    excess: f32


HIGH = 50.0
CRITICAL = 90.0


@rg.ring_kernel(capacity=1024)
def threshold_filter(r: Reading, out: rg.Outbox[Alert]) -> None:
    if r.value > HIGH:
        out.emit(Alert(sensor=r.sensor, seq=r.seq, level=1, excess=r.value - HIGH))
        if r.value > CRITICAL:
            out.emit(Alert(sensor=r.sensor, seq=r.seq, level=2, excess=r.value - CRITICAL))
    elif r.value < -HIGH:
        out.emit(Alert(sensor=r.sensor, seq=r.seq, level=-1, excess=-HIGH - r.value))
