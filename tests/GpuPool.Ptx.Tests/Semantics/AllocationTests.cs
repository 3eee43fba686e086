using GpuPool.Ptx.Semantics;
using Cvt = GpuPool.Ptx.Semantics.Convert;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>The semantics run inside generated kernels, once per thread per instruction: none of them may allocate.</summary>
public class AllocationTests
{
    private static readonly FloatRounding[] Modes = [FloatRounding.Rn, FloatRounding.Rz, FloatRounding.Rm, FloatRounding.Rp];

    private static double Exercise(int n)
    {
        double sink = 0;
        for (int i = 1; i <= n; i++)
        {
            float f = i * 1.37f;
            double d = i * 3.1e-3;
            foreach (FloatRounding r in Modes)
            {
                sink += Fp32.Add(f, 1e-9f, r) + Fp32.Mul(f, f, r) + Fp32.Fma(f, f, -f, r) + Fp32.Div(1f, f, r) + Fp32.Sqrt(f, r);
                sink += Fp64.Add(d, 1e-30, r) + Fp64.Mul(d, d, r) + Fp64.Fma(d, d, -d, r) + Fp64.Div(1, d, r) + Fp64.Sqrt(d, r);
                sink += Half16.Add(0x3C01, (ushort)i, r, false, false) + Half16.BFma(0x3F81, 0x3F81, (ushort)i, r) + Half16.FromSingle(f, r);
                sink += Cvt.S64ToF32(i * 123456789L, r) + Cvt.U64ToF64(ulong.MaxValue - (ulong)i, r) + Cvt.F64ToF32(d, r, true, false);
                sink += Cvt.Cvt((ulong)i, ScalarType.S32, ScalarType.F16, r, null, false, false);
            }

            sink += Cvt.F32ToS32(f, IntRounding.Rni) + (double)Cvt.Cvt(BitConverter.SingleToUInt32Bits(f), ScalarType.F32, ScalarType.S8, null, IntRounding.Rzi, false, false);
            sink += IntOps.Prmt((uint)i, 0x1234_5678, 0x3120, PrmtMode.Default) + IntOps.Prmt((uint)i, 7, 1, PrmtMode.B4e);
            sink += (double)IntOps.AddCc((ulong)i, ulong.MaxValue, 1).Carry + IntOps.BfeS32(i, 3, 9) + IntOps.Dp4a((uint)i, 0x0102_0304, 5, true, false);
            sink += Fp32.Compare(CompareOp.Leu, f, 3f) ? 1 : 0;
            sink += Fp32.Ex2Approx(f * 1e-3f) + Fp32.SinApprox(f) + Fp32.Testp(TestpKind.Subnormal, f).GetHashCode();
        }

        return sink;
    }

    [Fact]
    public void Instructions_do_not_allocate()
    {
        Exercise(100);   // warm up: jitting and static initialisation allocate
        long before = GC.GetAllocatedBytesForCurrentThread();
        double sink = Exercise(2_000);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(double.IsFinite(sink) || double.IsNaN(sink));
        Assert.Equal(0, allocated);
    }
}
