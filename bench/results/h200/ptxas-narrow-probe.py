import numpy as np, cupy as cp

src = r"""
extern "C" __global__ void k(const short* x, const float* f, int* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    short v = x[i];
    float g = f[i];
    short negA = (short)((unsigned)0 - (unsigned)v);
    out[i*8+0] = v >= negA;
    short negB = (short)((int)((((unsigned)0 - (unsigned)v) & 0xFFFFu) ^ 0x8000u) - 0x8000);
    out[i*8+1] = v >= negB;
    unsigned short nu = (unsigned short)((unsigned)0 - (unsigned)v);
    short negC; memcpy(&negC, &nu, 2);
    out[i*8+2] = v >= negC;
    short negD = (short)(((int)(((unsigned)0 - (unsigned)v) << 16)) >> 16);
    out[i*8+3] = v >= negD;
    out[i*8+4] = (-0.0225f) <= fabsf(g);
    out[i*8+5] = (-0.0225f) <= __int_as_float(__float_as_int(g) & 0x7fffffff);
    float a = fabsf(g);
    out[i*8+6] = !isnan(a) && (-0.0225f) <= a;
    out[i*8+7] = (short)(0 - v) <= v;
}
"""
for opts in [("-std=c++17", "--fmad=false")] + [
    ("-std=c++17", "--fmad=false", "-Xptxas", f"-O{o}") for o in (0, 1, 2)
]:
    try:
        m = cp.RawModule(code=src, options=opts, backend="nvcc")
    except Exception as e:
        print(opts, "compile failed", e)
        continue
    k = m.get_function("k")
    x = cp.asarray(np.array([-32768, -1, 0, 32767], np.int16))
    f = cp.asarray(np.array([np.nan, 1.0, -0.0, np.nan], np.float32))
    out = cp.zeros(32, cp.int32)
    k((1,), (32,), (x, f, out, np.int32(4)))
    print(opts, out.get().reshape(4, 8).tolist())
print("expected: x=-32768 -> cols0-3 = 1 (wraps), col7=1; f=nan -> cols4-6 = 0")
