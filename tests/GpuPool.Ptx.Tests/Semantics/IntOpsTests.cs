using System.Numerics;
using CsCheck;
using GpuPool.Ptx.Semantics;

namespace GpuPool.Ptx.Tests.Semantics;

/// <summary>The integer and bit instructions: the ISA's pseudocode transcribed as references, and its edge cases as tables.</summary>
public class IntOpsTests
{
    [Fact]
    public void MulHi_and_MulWide_agree_with_BigInteger() =>
        Gen.Select(Gen.Long, Gen.Long).Sample((a, b) =>
        {
            Assert.Equal((long)(((BigInteger)a * b) >> 64), IntOps.MulHi(a, b));
            Assert.Equal((ulong)(((BigInteger)(ulong)a * (ulong)b) >> 64), IntOps.MulHi((ulong)a, (ulong)b));
            Assert.Equal((int)(((long)(int)a * (int)b) >> 32), IntOps.MulHi((int)a, (int)b));
            Assert.Equal((uint)(((ulong)(uint)a * (uint)b) >> 32), IntOps.MulHi((uint)a, (uint)b));
            Assert.Equal((long)(int)a * (int)b, IntOps.MulWide((int)a, (int)b));
            Assert.Equal((ulong)(uint)a * (uint)b, IntOps.MulWide((uint)a, (uint)b));
            Assert.Equal((short)a * (short)b, IntOps.MulWide((short)a, (short)b));
        }, iter: 5_000);

    [Fact]
    public void Mul24_uses_the_low_24_bits_and_hi_returns_bits_47_to_16()
    {
        Assert.Equal(unchecked((int)0xFFFF_FFFF), IntOps.Mul24Lo(0x00FF_FFFF, 1));          // 0xFFFFFF is -1 in 24 bits
        Assert.Equal(6, IntOps.Mul24Lo(0x7F00_0002, 3));                                   // the top byte is ignored
        Assert.Equal(0xFE00_0001u, IntOps.Mul24Lo(0xFF_FFFFu, 0xFF_FFFFu));                // (2^24-1)^2 = 0xFFFFFE000001
        Assert.Equal(0xFFFF_FE00u, IntOps.Mul24Hi(0xFF_FFFFu, 0xFF_FFFFu));                // its bits 47..16
        Assert.Equal(-1, IntOps.Mul24Hi(0x00FF_FFFF, 1));                                  // -1 × 1 = -1: bits 47..16 all ones
        Assert.Equal(0x4000, IntOps.Mul24Hi(0x0040_0000, 0x100));                           // 2^22 × 2^8 = 2^30 → 2^14
        Assert.Equal(10, IntOps.Mad24Lo(2, 3, 4));
        Assert.Equal(int.MaxValue, IntOps.Mad24HiSat(0x7F_FFFF, 0x7F_FFFF, int.MaxValue));
        Assert.Equal(int.MinValue, IntOps.MadHiSat(int.MaxValue, int.MinValue, int.MinValue));
        Assert.Equal(-1 + 7, IntOps.MadHiSat(-1, 1, 7));
        Assert.Equal(0x1_0004u, IntOps.Mad24Hi(0x1_0000u, 0x1_0000u, 4u));   // 2^32: bits 47..16 are 2^16
    }

    [Fact]
    public void Sad_adds_the_absolute_difference()
    {
        Assert.Equal(10u, IntOps.Sad(3u, 10u, 3u));
        Assert.Equal(10u, IntOps.Sad(10u, 3u, 3u));
        Assert.Equal(7, IntOps.Sad(-3, 4, 0));
        Assert.Equal(int.MinValue, IntOps.Sad(int.MaxValue, -1, 0));   // wraps, as the ISA's a-b does
        Assert.Equal(ulong.MaxValue, IntOps.Sad(0UL, ulong.MaxValue, 0UL));
        Assert.Equal(5L, IntOps.Sad(-2L, 3L, 0L));
    }

    [Fact]
    public void Division_never_throws_and_returns_what_the_GPU_returns()
    {
        Assert.Equal(uint.MaxValue, IntOps.DivU32(5, 0));
        Assert.Equal(5u, IntOps.RemU32(5, 0));
        Assert.Equal(-1, IntOps.DivS32(5, 0));
        Assert.Equal(-1, IntOps.DivS32(-5, 0));
        Assert.Equal(-5, IntOps.RemS32(-5, 0));
        Assert.Equal(int.MinValue, IntOps.DivS32(int.MinValue, -1));
        Assert.Equal(0, IntOps.RemS32(int.MinValue, -1));
        Assert.Equal(-3, IntOps.DivS32(-7, 2));
        Assert.Equal(-1, IntOps.RemS32(-7, 2));
        Assert.Equal(ulong.MaxValue, IntOps.DivU64(1, 0));
        Assert.Equal(7UL, IntOps.RemU64(7, 0));
        Assert.Equal(long.MinValue, IntOps.DivS64(long.MinValue, -1));
        Assert.Equal(0L, IntOps.RemS64(long.MinValue, -1));
        Assert.Equal(-1L, IntOps.DivS64(3, 0));
        Assert.Equal(3L, IntOps.RemS64(3, 0));
    }

    [Fact]
    public void Abs_Neg_and_saturating_add()
    {
        Assert.Equal(int.MinValue, IntOps.AbsS32(int.MinValue));
        Assert.Equal(5, IntOps.AbsS32(-5));
        Assert.Equal(long.MinValue, IntOps.AbsS64(long.MinValue));
        Assert.Equal(int.MinValue, IntOps.NegS32(int.MinValue));
        Assert.Equal(int.MaxValue, IntOps.AddSat(int.MaxValue, 1));
        Assert.Equal(int.MinValue, IntOps.AddSat(int.MinValue, -1));
        Assert.Equal(int.MaxValue, IntOps.SubSat(0, int.MinValue));
        Assert.Equal(int.MinValue, IntOps.SubSat(-2, int.MaxValue));
        Assert.Equal(3, IntOps.AddSat(1, 2));
    }

    [Fact]
    public void Carry_and_borrow_chains_compute_multiword_arithmetic() =>
        Gen.Select(Gen.ULong, Gen.ULong, Gen.ULong, Gen.ULong).Sample((a0, a1, b0, b1) =>
        {
            BigInteger a = ((BigInteger)a1 << 64) | a0, b = ((BigInteger)b1 << 64) | b0, m = BigInteger.One << 128;

            (ulong s0, ulong c0) = IntOps.AddCc(a0, b0, 0);
            (ulong s1, ulong c1) = IntOps.AddCc(a1, b1, c0);
            Assert.Equal((a + b) % m, ((BigInteger)s1 << 64) | s0);
            Assert.Equal(a + b >= m ? 1UL : 0UL, c1);

            (ulong d0, ulong w0) = IntOps.SubCc(a0, b0, 0);
            (ulong d1, ulong w1) = IntOps.SubCc(a1, b1, w0);
            Assert.Equal(((a - b) % m + m) % m, ((BigInteger)d1 << 64) | d0);
            Assert.Equal(a < b ? 1UL : 0UL, w1);

            // The same chain in 32-bit words.
            (uint t0, uint k0) = IntOps.AddCc((uint)a0, (uint)b0, 0);
            (uint t1, uint k1) = IntOps.AddCc((uint)(a0 >> 32), (uint)(b0 >> 32), k0);
            Assert.Equal(unchecked(a0 + b0), ((ulong)t1 << 32) | t0);
            Assert.Equal(((BigInteger)a0 + b0) >= (BigInteger.One << 64) ? 1u : 0u, k1);
            (uint u0, uint v0) = IntOps.SubCc((uint)a0, (uint)b0, 0);
            (uint u1, uint v1) = IntOps.SubCc((uint)(a0 >> 32), (uint)(b0 >> 32), v0);
            Assert.Equal(unchecked(a0 - b0), ((ulong)u1 << 32) | u0);
            Assert.Equal(a0 < b0 ? 1u : 0u, v1);
        }, iter: 5_000);

    [Fact]
    public void Carry_in_that_overflows_on_its_own_is_counted()
    {
        Assert.Equal((0u, 1u), IntOps.AddCc(uint.MaxValue, 0u, 1u));
        Assert.Equal((0UL, 1UL), IntOps.AddCc(ulong.MaxValue, 0UL, 1UL));
        Assert.Equal((uint.MaxValue, 1u), IntOps.SubCc(0u, 0u, 1u));
        Assert.Equal((ulong.MaxValue, 1UL), IntOps.SubCc(0UL, 0UL, 1UL));
        Assert.Equal((0u, 1u), IntOps.SubCc(0u, uint.MaxValue, 1u));
    }

    [Fact]
    public void Bit_counts()
    {
        Assert.Equal(32, IntOps.Popc(uint.MaxValue));
        Assert.Equal(1, IntOps.Popc(1UL << 63));
        Assert.Equal(32, IntOps.Clz(0u));
        Assert.Equal(64, IntOps.Clz(0UL));
        Assert.Equal(0, IntOps.Clz(0x8000_0000u));
        Assert.Equal(0x8000_0000u, IntOps.Brev(1u));
        Assert.Equal(0x1E6A_2C48u, IntOps.Brev(0x1234_5678u));
        Assert.Equal(1UL << 63, IntOps.Brev(1UL));
        Assert.Equal(0x1E6A_2C48_0000_0000UL | 0x1, IntOps.Brev(0x8000_0000_1234_5678UL));
    }

    /// <summary>The ISA's bfind pseudocode, transcribed.</summary>
    private static uint BfindRef(ulong a, int msb, bool signed, bool shiftAmt)
    {
        if (signed && ((a >> msb) & 1) != 0)
        {
            a = ~a;
        }

        uint d = 0xFFFF_FFFF;
        for (int i = msb; i >= 0; i--)
        {
            if (((a >> i) & 1) != 0)
            {
                d = (uint)i;
                break;
            }
        }

        return shiftAmt && d != 0xFFFF_FFFF ? (uint)msb - d : d;
    }

    [Fact]
    public void Bfind_follows_the_ISA_pseudocode() =>
        Gen.Select(Gen.OneOf(Gen.Long, Gen.Long.Select(x => x >> (int)(x & 63))), Gen.Bool).Sample((a, shift) =>
        {
            Assert.Equal(BfindRef((uint)a, 31, false, shift), IntOps.Bfind((uint)a, shift));
            Assert.Equal(BfindRef((uint)a, 31, true, shift), IntOps.Bfind((int)a, shift));
            Assert.Equal(BfindRef((ulong)a, 63, false, shift), IntOps.Bfind((ulong)a, shift));
            Assert.Equal(BfindRef((ulong)a, 63, true, shift), IntOps.Bfind(a, shift));
        }, iter: 5_000);

    [Fact]
    public void Bfind_without_a_bit_is_all_ones()
    {
        Assert.Equal(0xFFFF_FFFFu, IntOps.Bfind(0u, false));
        Assert.Equal(0xFFFF_FFFFu, IntOps.Bfind(-1, true));
        Assert.Equal(0xFFFF_FFFFu, IntOps.Bfind(0L, true));
        Assert.Equal(30u, IntOps.Bfind(int.MinValue, false));
        Assert.Equal(1u, IntOps.Bfind(int.MinValue, true));
        Assert.Equal(31u, IntOps.Bfind(1u, true));
    }

    /// <summary>The ISA's bfe pseudocode, transcribed.</summary>
    private static ulong BfeRef(ulong a, uint b, uint c, int msb, bool signed)
    {
        int pos = (int)(b & 0xFF), len = (int)(c & 0xFF);
        ulong sbit = !signed || len == 0 ? 0 : (a >> Math.Min(pos + len - 1, msb)) & 1;
        ulong d = 0;
        for (int i = 0; i <= msb; i++)
        {
            ulong bit = i < len && pos + i <= msb ? (a >> (pos + i)) & 1 : sbit;
            d |= bit << i;
        }

        return d;
    }

    private static readonly Gen<uint> FieldArg = Gen.OneOf(Gen.UInt[0, 70], Gen.UInt);

    [Fact]
    public void Bfe_follows_the_ISA_pseudocode_including_sign_replication_and_positions_past_the_msb() =>
        Gen.Select(Gen.Long, FieldArg, FieldArg).Sample((a, pos, len) =>
        {
            Assert.Equal((uint)BfeRef((uint)a, pos, len, 31, false), IntOps.BfeU32((uint)a, pos, len));
            Assert.Equal((uint)BfeRef((uint)a, pos, len, 31, true), (uint)IntOps.BfeS32((int)a, pos, len));
            Assert.Equal(BfeRef((ulong)a, pos, len, 63, false), IntOps.BfeU64((ulong)a, pos, len));
            Assert.Equal(BfeRef((ulong)a, pos, len, 63, true), (ulong)IntOps.BfeS64(a, pos, len));
        }, iter: 10_000);

    [Fact]
    public void Bfe_examples()
    {
        Assert.Equal(0xFFFF_FFF8u, (uint)IntOps.BfeS32(0x0000_00F8, 0, 4));   // field 1000b: sign-replicated
        Assert.Equal(8u, IntOps.BfeU32(0xF8, 0, 4));
        Assert.Equal(-1, IntOps.BfeS32(int.MinValue, 40, 4));                 // past the msb: replicated a[31]
        Assert.Equal(0, IntOps.BfeS32(int.MinValue, 4, 0));                   // len 0 is 0
        Assert.Equal(-2, IntOps.BfeS32(unchecked((int)0xFFFF_FFFE), 0, 0x100 + 200));
        Assert.Equal(0x0Fu, IntOps.BfeU32(0xF000_0000, 28, 8));
        Assert.Equal(-1, IntOps.BfeS32(unchecked((int)0xF000_0000), 28, 8));   // field runs past bit 31: sign from a[31]
    }

    [Fact]
    public void Bfi_inserts_the_low_bits_and_clips_at_the_msb()
    {
        Assert.Equal(0xFFFF_F0FFu, IntOps.Bfi(0x0u, 0xFFFF_FFFFu, 8, 4));
        Assert.Equal(0x0000_0A00u, IntOps.Bfi(0xFFFF_FFFAu, 0u, 8, 4));
        Assert.Equal(0x8000_0000u, IntOps.Bfi(0x3u, 0u, 31, 8));
        Assert.Equal(0x1234u, IntOps.Bfi(0xFFu, 0x1234u, 32, 8));
        Assert.Equal(0x1234u, IntOps.Bfi(0xFFu, 0x1234u, 3, 0));
        Assert.Equal(0xABCD_EF01u, IntOps.Bfi(0xABCD_EF01u, 0x1234u, 0, 40));
        Assert.Equal(0xF000_0000_0000_0000UL, IntOps.Bfi(0xFFUL, 0UL, 60, 8));
    }

    private const uint A = 0x0302_0100, B = 0x0706_0504;

    [Theory]
    [InlineData(0x3210u, 0x0302_0100u)]
    [InlineData(0x7654u, 0x0706_0504u)]
    [InlineData(0x0123u, 0x0001_0203u)]
    [InlineData(0x4444u, 0x0404_0404u)]
    [InlineData(0x5140u, 0x0501_0400u)]
    public void Prmt_generic_picks_bytes_of_b_a(uint c, uint expected) => Assert.Equal(expected, IntOps.Prmt(A, B, c, PrmtMode.Default));

    [Fact]
    public void Prmt_generic_replicates_the_sign_when_the_selector_msb_is_set()
    {
        Assert.Equal(0x7F7F_FF00u, IntOps.Prmt(0x0000_807F, 0, 0x0098, PrmtMode.Default));
        Assert.Equal(0xFF00_0000u, IntOps.Prmt(0, 0x8000_0000, 0xF000, PrmtMode.Default));
    }

    [Theory]
    [InlineData(PrmtMode.F4e, 0u, 0x0302_0100u)]
    [InlineData(PrmtMode.F4e, 1u, 0x0403_0201u)]
    [InlineData(PrmtMode.F4e, 3u, 0x0605_0403u)]
    [InlineData(PrmtMode.B4e, 0u, 0x0506_0700u)]
    [InlineData(PrmtMode.B4e, 1u, 0x0607_0001u)]
    [InlineData(PrmtMode.B4e, 3u, 0x0001_0203u)]
    [InlineData(PrmtMode.Rc8, 2u, 0x0202_0202u)]
    [InlineData(PrmtMode.Ecl, 1u, 0x0302_0101u)]
    [InlineData(PrmtMode.Ecl, 2u, 0x0302_0202u)]
    [InlineData(PrmtMode.Ecr, 2u, 0x0202_0100u)]
    [InlineData(PrmtMode.Ecr, 1u, 0x0101_0100u)]
    [InlineData(PrmtMode.Rc16, 1u, 0x0302_0302u)]
    [InlineData(PrmtMode.Rc16, 0u, 0x0100_0100u)]
    [InlineData(PrmtMode.Rc16, 6u, 0x0100_0100u)]   // only c[1:0] counts
    public void Prmt_modes_follow_the_ISA_table(PrmtMode mode, uint c, uint expected) => Assert.Equal(expected, IntOps.Prmt(A, B, c, mode));

    [Fact]
    public void Funnel_shifts_wrap_or_clamp_the_count() =>
        Gen.Select(Gen.UInt, Gen.UInt, Gen.UInt[0, 100]).Sample((lo, hi, n) =>
        {
            ulong v = ((ulong)hi << 32) | lo;
            int clamped = (int)Math.Min(n, 32u), wrapped = (int)(n & 31);
            Assert.Equal((uint)((v << clamped) >> 32), IntOps.ShfL(lo, hi, n, true));
            Assert.Equal((uint)((v << wrapped) >> 32), IntOps.ShfL(lo, hi, n, false));
            Assert.Equal((uint)(v >> clamped), IntOps.ShfR(lo, hi, n, true));
            Assert.Equal((uint)(v >> wrapped), IntOps.ShfR(lo, hi, n, false));
        }, iter: 5_000);

    [Fact]
    public void Funnel_shift_examples()
    {
        Assert.Equal(0x1111_1111u, IntOps.ShfL(0x2222_2222, 0x1111_1111, 0, true));
        Assert.Equal(0x2222_2222u, IntOps.ShfL(0x2222_2222, 0x1111_1111, 40, true));   // clamped to 32: all of a
        Assert.Equal(0x1111_1111u << 8 | 0x22, IntOps.ShfL(0x2222_2222, 0x1111_1111, 40, false));
        Assert.Equal(0x1111_1111u, IntOps.ShfR(0x2222_2222, 0x1111_1111, 32, true));
        Assert.Equal(0x2222_2222u, IntOps.ShfR(0x2222_2222, 0x1111_1111, 32, false)); // wrapped to 0
    }

    [Fact]
    public void Shifts_past_the_width_give_zero_or_the_sign()
    {
        Assert.Equal(0u, IntOps.Shl(1u, 32));
        Assert.Equal(0u, IntOps.Shl(1u, uint.MaxValue));
        Assert.Equal(0x8000_0000u, IntOps.Shl(1u, 31));
        Assert.Equal(0UL, IntOps.Shl(1UL, 64));
        Assert.Equal(1UL << 40, IntOps.Shl(1UL, 40));
        Assert.Equal((ushort)0, IntOps.Shl((ushort)1, 16));
        Assert.Equal(0u, IntOps.ShrU(0x8000_0000u, 32));
        Assert.Equal(0UL, IntOps.ShrU(ulong.MaxValue, 100));
        Assert.Equal((ushort)0, IntOps.ShrU((ushort)0x8000, 16));
        Assert.Equal(-1, IntOps.ShrS(int.MinValue, 32));
        Assert.Equal(-1, IntOps.ShrS(-5, uint.MaxValue));
        Assert.Equal(0, IntOps.ShrS(5, 40));
        Assert.Equal(-1L, IntOps.ShrS(long.MinValue, 64));
        Assert.Equal((short)-1, IntOps.ShrS((short)-2, 16));
        Assert.Equal(int.MinValue >> 4, IntOps.ShrS(int.MinValue, 4));
    }

    [Fact]
    public void Dot_products_follow_the_ISA_pseudocode() =>
        Gen.Select(Gen.UInt, Gen.UInt, Gen.Int, Gen.Bool, Gen.Bool).Sample((a, b, c, sa, sb) =>
        {
            long d4 = c, d2lo = c, d2hi = c;
            for (int i = 0; i < 4; i++)
            {
                long x = sa ? (sbyte)(a >> (8 * i)) : (byte)(a >> (8 * i));
                long y = sb ? (sbyte)(b >> (8 * i)) : (byte)(b >> (8 * i));
                d4 += x * y;
            }

            for (int i = 0; i < 2; i++)
            {
                long x = sa ? (short)(a >> (16 * i)) : (ushort)(a >> (16 * i));
                d2lo += x * (sb ? (sbyte)(b >> (8 * i)) : (byte)(b >> (8 * i)));
                d2hi += x * (sb ? (sbyte)(b >> (8 * (i + 2))) : (byte)(b >> (8 * (i + 2))));
            }

            Assert.Equal((int)d4, IntOps.Dp4a(a, b, c, sa, sb));
            Assert.Equal((int)d2lo, IntOps.Dp2a(a, b, c, sa, sb, false));
            Assert.Equal((int)d2hi, IntOps.Dp2a(a, b, c, sa, sb, true));
        }, iter: 5_000);

    [Fact]
    public void Dot_product_examples()
    {
        Assert.Equal(-4 + 100, IntOps.Dp4a(0xFFFF_FFFF, 0x0101_0101, 100, true, false));   // four (-1)(1)
        Assert.Equal((255 * 4) + 100, IntOps.Dp4a(0xFFFF_FFFF, 0x0101_0101, 100, false, false));
        Assert.Equal((2 * 3) + (-1 * 4), IntOps.Dp2a(0xFFFF_0002, 0x0000_0403, 0, true, true, false));
        Assert.Equal((2 * 3) + (-1 * 4), IntOps.Dp2a(0xFFFF_0002, 0x0403_0000, 0, true, true, true));
    }

    [Fact]
    public void Min_Max_relu_and_packed_halves()
    {
        Assert.Equal(-3, IntOps.Min(-3, 2));
        Assert.Equal(2u, IntOps.Min(0xFFFF_FFFFu, 2u));
        Assert.Equal(0, IntOps.MinRelu(-3, 2));
        Assert.Equal(0, IntOps.MaxRelu(-3, -2));
        Assert.Equal(5, IntOps.MaxRelu(-3, 5));
        Assert.Equal(0x0000_0001u, IntOps.Min16x2(0x7FFF_0001, 0x8000_0002, true, true));
        Assert.Equal(0x8000_0001u, IntOps.Min16x2(0x7FFF_0001, 0x8000_0002, true, false));
        Assert.Equal(0x7FFF_0001u, IntOps.Min16x2(0x7FFF_0001, 0x8000_0002, false, false));
        Assert.Equal(0x8000_0002u, IntOps.Max16x2(0x7FFF_0001, 0x8000_0002, false, false));
        Assert.Equal(0x7FFF_0002u, IntOps.Max16x2(0x7FFF_0001, 0x8000_0002, true, false));
    }

    [Theory]
    [InlineData(CompareOp.Eq, false, false)]
    [InlineData(CompareOp.Ne, true, true)]
    [InlineData(CompareOp.Lt, true, false)]
    [InlineData(CompareOp.Le, true, false)]
    [InlineData(CompareOp.Gt, false, true)]
    [InlineData(CompareOp.Ge, false, true)]
    [InlineData(CompareOp.Lo, false, false)]
    [InlineData(CompareOp.Ls, false, false)]
    [InlineData(CompareOp.Hi, true, true)]
    [InlineData(CompareOp.Hs, true, true)]
    public void Integer_compare_of_minus_one_with_one(CompareOp op, bool signed, bool unsignedResult)
    {
        Assert.Equal(signed, IntOps.Compare(op, -1L, 1L));
        Assert.Equal(unsignedResult, IntOps.Compare(op, ulong.MaxValue, 1UL));
    }

    [Fact]
    public void Integer_compare_rejects_the_float_only_comparisons() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => IntOps.Compare(CompareOp.Nan, 1L, 2L));
}
