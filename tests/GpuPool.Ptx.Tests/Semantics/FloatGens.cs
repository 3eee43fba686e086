using CsCheck;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>Generators that reach the places rounding goes wrong: close exponents, ties, subnormals, the edge of overflow.</summary>
internal static class FloatGens
{
    private static Gen<float> F32Exp(int lo, int hi, uint mantMask) =>
        Gen.Select(Gen.Int[lo, hi], Gen.UInt, Gen.Bool)
            .Select((e, m, s) => BitConverter.UInt32BitsToSingle((s ? 0x8000_0000u : 0u) | ((uint)e << 23) | (m & mantMask)));

    /// <summary>Finite floats of every kind: random bits, near 1, few-bit mantissas (exact ties), subnormal, huge.</summary>
    public static readonly Gen<float> F32 = Gen.OneOf(
        Gen.UInt.Select(BitConverter.UInt32BitsToSingle).Where(float.IsFinite),
        F32Exp(115, 140, 0x7F_FFFF),
        F32Exp(120, 135, 0x7F_0000),
        F32Exp(0, 30, 0x7F_FFFF),
        F32Exp(200, 254, 0x7F_FFFF));

    private static Gen<double> F64Exp(int lo, int hi, ulong mantMask) =>
        Gen.Select(Gen.Int[lo, hi], Gen.ULong, Gen.Bool)
            .Select((e, m, s) => BitConverter.UInt64BitsToDouble((s ? 0x8000_0000_0000_0000UL : 0UL) | ((ulong)e << 52) | (m & mantMask)));

    public static readonly Gen<double> F64 = Gen.OneOf(
        Gen.ULong.Select(BitConverter.UInt64BitsToDouble).Where(double.IsFinite),
        F64Exp(1000, 1046, 0xF_FFFF_FFFF_FFFF),
        F64Exp(1010, 1040, 0xF_F000_0000_0000),
        F64Exp(0, 60, 0xF_FFFF_FFFF_FFFF),
        F64Exp(1950, 2046, 0xF_FFFF_FFFF_FFFF));

    public static uint Bits(float f) => BitConverter.SingleToUInt32Bits(f);

    public static ulong Bits(double d) => BitConverter.DoubleToUInt64Bits(d);
}
