using System.Numerics;
using System.Runtime.CompilerServices;

namespace GpuPool.Ptx.Semantics;

/// <summary>
/// The integer and bit instructions whose meaning is more than one IL opcode: PTX defines a result for every input
/// (shift counts past the width, division by zero, MinValue / -1), where .NET would throw or mask.
/// </summary>
public static class IntOps
{
    // ---- multiplication ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint MulHi(uint a, uint b) => (uint)(((ulong)a * b) >> 32);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MulHi(int a, int b) => (int)(((long)a * b) >> 32);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong MulHi(ulong a, ulong b) => Math.BigMul(a, b, out _);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long MulHi(long a, long b) => Math.BigMul(a, b, out _);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long MulWide(int a, int b) => (long)a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong MulWide(uint a, uint b) => (ulong)a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MulWide(short a, short b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint MulWide(ushort a, ushort b) => (uint)a * b;

    /// <summary>mul24.lo.s32: the low 32 bits of the product of the sign-extended low 24 bits of a and b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Mul24Lo(int a, int b) => (int)((long)Sext24(a) * Sext24(b));

    /// <summary>mul24.hi.s32: bits 47..16 of the 48-bit product of the sign-extended low 24 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Mul24Hi(int a, int b) => (int)(((long)Sext24(a) * Sext24(b)) >> 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Mul24Lo(uint a, uint b) => (uint)((ulong)(a & 0xFF_FFFF) * (b & 0xFF_FFFF));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Mul24Hi(uint a, uint b) => (uint)(((ulong)(a & 0xFF_FFFF) * (b & 0xFF_FFFF)) >> 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Mad24Lo(int a, int b, int c) => unchecked(Mul24Lo(a, b) + c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Mad24Hi(int a, int b, int c) => unchecked(Mul24Hi(a, b) + c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Mad24Lo(uint a, uint b, uint c) => unchecked(Mul24Lo(a, b) + c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Mad24Hi(uint a, uint b, uint c) => unchecked(Mul24Hi(a, b) + c);

    /// <summary>mad24.hi.sat.s32: the high part plus c, clamped to the s32 range.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Mad24HiSat(int a, int b, int c) => (int)Math.Clamp((long)Mul24Hi(a, b) + c, int.MinValue, int.MaxValue);

    /// <summary>mad.hi.sat.s32: the high 32 bits of a × b plus c, clamped to the s32 range.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MadHiSat(int a, int b, int c) => (int)Math.Clamp((long)MulHi(a, b) + c, int.MinValue, int.MaxValue);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Sext24(int a) => (a << 8) >> 8;

    // ---- sad ----

    /// <summary>sad.u32: c + |a - b|, wrapping.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Sad(uint a, uint b, uint c) => unchecked(c + (a < b ? b - a : a - b));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Sad(int a, int b, int c) => unchecked(c + (a < b ? b - a : a - b));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Sad(ulong a, ulong b, ulong c) => unchecked(c + (a < b ? b - a : a - b));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Sad(long a, long b, long c) => unchecked(c + (a < b ? b - a : a - b));

    // ---- division: the ISA leaves x/0 undefined; these return what NVIDIA GPUs return ----

    /// <summary>div.u32; a/0 is 0xFFFFFFFF, as on the GPU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint DivU32(uint a, uint b) => b == 0 ? uint.MaxValue : a / b;

    /// <summary>rem.u32; a%0 is a.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint RemU32(uint a, uint b) => b == 0 ? a : a % b;

    /// <summary>div.s32; a/0 is -1, MinValue/-1 is MinValue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int DivS32(int a, int b) => b == 0 ? -1 : (b == -1 ? unchecked(-a) : a / b);

    /// <summary>rem.s32; a%0 is a, MinValue%-1 is 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RemS32(int a, int b) => b == 0 ? a : (b == -1 ? 0 : a % b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong DivU64(ulong a, ulong b) => b == 0 ? ulong.MaxValue : a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong RemU64(ulong a, ulong b) => b == 0 ? a : a % b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long DivS64(long a, long b) => b == 0 ? -1 : (b == -1 ? unchecked(-a) : a / b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long RemS64(long a, long b) => b == 0 ? a : (b == -1 ? 0 : a % b);

    // ---- abs, neg, saturating add ----

    /// <summary>abs.s32: |MinValue| is MinValue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int AbsS32(int a) => a < 0 ? unchecked(-a) : a;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long AbsS64(long a) => a < 0 ? unchecked(-a) : a;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NegS32(int a) => unchecked(-a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long NegS64(long a) => unchecked(-a);

    /// <summary>add.sat.s32: clamps to [MinValue, MaxValue].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int AddSat(int a, int b) => (int)Math.Clamp((long)a + b, int.MinValue, int.MaxValue);

    /// <summary>sub.sat.s32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SubSat(int a, int b) => (int)Math.Clamp((long)a - b, int.MinValue, int.MaxValue);

    // ---- carry chains: CC.CF is the carry-out of add.cc/addc, and the borrow-out of sub.cc/subc ----

    /// <summary>add.cc / addc: a + b + carryIn and the carry out (0 or 1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint Sum, uint Carry) AddCc(uint a, uint b, uint carryIn)
    {
        ulong s = (ulong)a + b + (carryIn & 1);
        return ((uint)s, (uint)(s >> 32));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (ulong Sum, ulong Carry) AddCc(ulong a, ulong b, ulong carryIn)
    {
        ulong s1 = unchecked(a + b);
        ulong c1 = s1 < a ? 1UL : 0UL;
        ulong s2 = unchecked(s1 + (carryIn & 1));
        ulong c2 = s2 < s1 ? 1UL : 0UL;
        return (s2, c1 | c2);
    }

    /// <summary>sub.cc / subc: a - (b + borrowIn) and the borrow out (1 when that went below zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint Difference, uint Borrow) SubCc(uint a, uint b, uint borrowIn)
    {
        ulong t = (ulong)b + (borrowIn & 1);
        return (unchecked((uint)(a - t)), a < t ? 1u : 0u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (ulong Difference, ulong Borrow) SubCc(ulong a, ulong b, ulong borrowIn)
    {
        ulong d1 = unchecked(a - b);
        ulong b1 = a < b ? 1UL : 0UL;
        ulong d2 = unchecked(d1 - (borrowIn & 1));
        ulong b2 = d1 < (borrowIn & 1) ? 1UL : 0UL;
        return (d2, b1 | b2);
    }

    /// <summary>add.cc / addc as the engine calls them: the sum, the carry out in <paramref name="carryOut"/>.</summary>
    public static uint AddCarry(uint a, uint b, int carryIn, out int carryOut)
    {
        var (sum, carry) = AddCc(a, b, (uint)carryIn);
        carryOut = (int)carry;
        return sum;
    }

    public static ulong AddCarry(ulong a, ulong b, int carryIn, out int carryOut)
    {
        var (sum, carry) = AddCc(a, b, (ulong)carryIn);
        carryOut = (int)carry;
        return sum;
    }

    /// <summary>sub.cc / subc as the engine calls them: the difference, the borrow out in <paramref name="borrowOut"/>.</summary>
    public static uint SubCarry(uint a, uint b, int borrowIn, out int borrowOut)
    {
        var (difference, borrow) = SubCc(a, b, (uint)borrowIn);
        borrowOut = (int)borrow;
        return difference;
    }

    public static ulong SubCarry(ulong a, ulong b, int borrowIn, out int borrowOut)
    {
        var (difference, borrow) = SubCc(a, b, (ulong)borrowIn);
        borrowOut = (int)borrow;
        return difference;
    }

    // ---- bit counting ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Popc(uint a) => BitOperations.PopCount(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Popc(ulong a) => BitOperations.PopCount(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Clz(uint a) => BitOperations.LeadingZeroCount(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Clz(ulong a) => BitOperations.LeadingZeroCount(a);

    /// <summary>bfind.u32: position of the most significant 1, or 0xFFFFFFFF; with .shiftamt, 31 minus it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Bfind(uint a, bool shiftAmt) => a == 0 ? uint.MaxValue : (shiftAmt ? (uint)BitOperations.LeadingZeroCount(a) : (uint)(31 - BitOperations.LeadingZeroCount(a)));

    /// <summary>bfind.s32: the most significant bit that differs from the sign (negative inputs are complemented first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Bfind(int a, bool shiftAmt) => Bfind((uint)(a < 0 ? ~a : a), shiftAmt);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Bfind(ulong a, bool shiftAmt) => a == 0 ? uint.MaxValue : (shiftAmt ? (uint)BitOperations.LeadingZeroCount(a) : (uint)(63 - BitOperations.LeadingZeroCount(a)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Bfind(long a, bool shiftAmt) => Bfind((ulong)(a < 0 ? ~a : a), shiftAmt);

    public static uint Brev(uint a)
    {
        a = ((a >> 1) & 0x5555_5555) | ((a & 0x5555_5555) << 1);
        a = ((a >> 2) & 0x3333_3333) | ((a & 0x3333_3333) << 2);
        a = ((a >> 4) & 0x0F0F_0F0F) | ((a & 0x0F0F_0F0F) << 4);
        return System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(a);
    }

    public static ulong Brev(ulong a) => ((ulong)Brev((uint)a) << 32) | Brev((uint)(a >> 32));

    // ---- bit fields: pos and len are taken mod 256, as the ISA says ----

    /// <summary>bfe.u32: len bits from pos, zero-filled; bits past bit 31 read as 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint BfeU32(uint a, uint pos, uint len)
    {
        pos &= 0xFF;
        len &= 0xFF;
        if (len == 0 || pos >= 32)
        {
            return 0;
        }

        uint v = a >> (int)pos;
        return len >= 32 ? v : v & ((1u << (int)len) - 1);
    }

    /// <summary>bfe.s32: the field sign-extended from bit min(pos+len-1, 31) of a; zero when len is 0.</summary>
    public static int BfeS32(int a, uint pos, uint len)
    {
        pos &= 0xFF;
        len &= 0xFF;
        if (len == 0)
        {
            return 0;
        }

        uint top = Math.Min(pos + len - 1, 31);
        if (pos >= 32)
        {
            return a >> 31;   // every bit is the sign bit a[31]
        }

        // Keep bits pos..top, then sign-extend from top.
        int width = (int)(top - pos + 1);
        int v = a << (31 - (int)top);
        return v >> (32 - width);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong BfeU64(ulong a, uint pos, uint len)
    {
        pos &= 0xFF;
        len &= 0xFF;
        if (len == 0 || pos >= 64)
        {
            return 0;
        }

        ulong v = a >> (int)pos;
        return len >= 64 ? v : v & ((1UL << (int)len) - 1);
    }

    public static long BfeS64(long a, uint pos, uint len)
    {
        pos &= 0xFF;
        len &= 0xFF;
        if (len == 0)
        {
            return 0;
        }

        uint top = Math.Min(pos + len - 1, 63);
        if (pos >= 64)
        {
            return a >> 63;
        }

        int width = (int)(top - pos + 1);
        long v = a << (63 - (int)top);
        return v >> (64 - width);
    }

    /// <summary>bfi.b32: b with its bits pos.. replaced by the low len bits of a (bits past 31 are dropped).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Bfi(uint a, uint b, uint pos, uint len)
    {
        pos &= 0xFF;
        len &= 0xFF;
        if (len == 0 || pos >= 32)
        {
            return b;
        }

        uint field = len >= 32 ? uint.MaxValue : (1u << (int)len) - 1;
        uint mask = field << (int)pos;
        return (b & ~mask) | ((a << (int)pos) & mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Bfi(ulong a, ulong b, uint pos, uint len)
    {
        pos &= 0xFF;
        len &= 0xFF;
        if (len == 0 || pos >= 64)
        {
            return b;
        }

        ulong field = len >= 64 ? ulong.MaxValue : (1UL << (int)len) - 1;
        ulong mask = field << (int)pos;
        return (b & ~mask) | ((a << (int)pos) & mask);
    }

    // ---- prmt ----

    /// <summary>prmt.b32{.mode} d, a, b, c: bytes of {b, a} (a holds bytes 0-3) picked by c.</summary>
    public static uint Prmt(uint a, uint b, uint c, PrmtMode mode)
    {
        ulong src = ((ulong)b << 32) | a;
        if (mode == PrmtMode.Default)
        {
            uint d = 0;
            for (int i = 0; i < 4; i++)
            {
                uint sel = (c >> (4 * i)) & 0xF;
                uint v = (uint)(src >> (int)(8 * (sel & 7))) & 0xFF;
                if ((sel & 8) != 0)
                {
                    v = (v & 0x80) != 0 ? 0xFFu : 0u;   // replicate the byte's sign
                }

                d |= v << (8 * i);
            }

            return d;
        }

        // The specialised modes: c[1:0] picks a row of the ISA's table; each row lists the source byte for d.b0..d.b3.
        uint row = RowOf(mode, c & 3);
        uint result = 0;
        for (int i = 0; i < 4; i++)
        {
            uint sel = (row >> (4 * i)) & 0xF;
            result |= ((uint)(src >> (int)(8 * sel)) & 0xFF) << (8 * i);
        }

        return result;
    }

    /// <summary>The selectors for d.b0 (low nibble) to d.b3 of one row of the prmt mode table.</summary>
    private static uint RowOf(PrmtMode mode, uint s) => mode switch
    {
        PrmtMode.F4e => s switch { 0 => 0x3210u, 1 => 0x4321u, 2 => 0x5432u, _ => 0x6543u },
        PrmtMode.B4e => s switch { 0 => 0x5670u, 1 => 0x6701u, 2 => 0x7012u, _ => 0x0123u },
        PrmtMode.Rc8 => s switch { 0 => 0x0000u, 1 => 0x1111u, 2 => 0x2222u, _ => 0x3333u },
        PrmtMode.Ecl => s switch { 0 => 0x3210u, 1 => 0x3211u, 2 => 0x3222u, _ => 0x3333u },
        PrmtMode.Ecr => s switch { 0 => 0x0000u, 1 => 0x1110u, 2 => 0x2210u, _ => 0x3210u },
        PrmtMode.Rc16 => s switch { 0 => 0x1010u, 1 => 0x3232u, 2 => 0x1010u, _ => 0x3232u },
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "not a prmt mode"),
    };

    // ---- shifts: PTX shift counts are unsigned and saturate at the width ----

    /// <summary>shf.l.{wrap,clamp}.b32 d, lo, hi, n: the high 32 bits of {hi, lo} shifted left.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ShfL(uint lo, uint hi, uint n, bool clamp)
    {
        int k = clamp ? (int)Math.Min(n, 32u) : (int)(n & 31);
        return (uint)(((((ulong)hi << 32) | lo) << k) >> 32);
    }

    /// <summary>shf.r.{wrap,clamp}.b32 d, lo, hi, n: the low 32 bits of {hi, lo} shifted right.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ShfR(uint lo, uint hi, uint n, bool clamp)
    {
        int k = clamp ? (int)Math.Min(n, 32u) : (int)(n & 31);
        return (uint)((((ulong)hi << 32) | lo) >> k);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Shl(uint a, uint n) => n >= 32 ? 0 : a << (int)n;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Shl(ulong a, uint n) => n >= 64 ? 0 : a << (int)n;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Shl(ushort a, uint n) => n >= 16 ? (ushort)0 : (ushort)(a << (int)n);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint ShrU(uint a, uint n) => n >= 32 ? 0 : a >> (int)n;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ShrU(ulong a, uint n) => n >= 64 ? 0 : a >> (int)n;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort ShrU(ushort a, uint n) => n >= 16 ? (ushort)0 : (ushort)(a >> (int)n);

    /// <summary>shr.s32: counts of 32 or more fill with the sign.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ShrS(int a, uint n) => a >> (int)Math.Min(n, 31u);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ShrS(long a, uint n) => a >> (int)Math.Min(n, 63u);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static short ShrS(short a, uint n) => (short)(a >> (int)Math.Min(n, 15u));

    // ---- dot products ----

    /// <summary>dp4a: c plus the sum of the four byte products, each byte sign- or zero-extended; wraps at 32 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dp4a(uint a, uint b, int c, bool aSigned, bool bSigned)
    {
        int d = c;
        for (int i = 0; i < 32; i += 8)
        {
            d = unchecked(d + (Byte(a, i, aSigned) * Byte(b, i, bSigned)));
        }

        return d;
    }

    /// <summary>dp2a.lo / dp2a.hi: c plus the two 16-bit halves of a times bytes 0-1 (lo) or 2-3 (hi) of b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dp2a(uint a, uint b, int c, bool aSigned, bool bSigned, bool hi)
    {
        int shift = hi ? 16 : 0;
        int a0 = aSigned ? (short)a : (int)(a & 0xFFFF);
        int a1 = aSigned ? (short)(a >> 16) : (int)(a >> 16);
        return unchecked(c + (a0 * Byte(b, shift, bSigned)) + (a1 * Byte(b, shift + 8, bSigned)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Byte(uint x, int shift, bool signed) => signed ? (sbyte)(x >> shift) : (int)((x >> shift) & 0xFF);

    // ---- min, max, compare ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Min(int a, int b) => Math.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Min(uint a, uint b) => Math.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Min(long a, long b) => Math.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Min(ulong a, ulong b) => Math.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Max(int a, int b) => Math.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Max(uint a, uint b) => Math.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Max(long a, long b) => Math.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Max(ulong a, ulong b) => Math.Max(a, b);

    /// <summary>min.relu.s32 (sm_80): the minimum, clamped below at 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MinRelu(int a, int b) => Math.Max(Math.Min(a, b), 0);

    /// <summary>max.relu.s32 (sm_80): the maximum, clamped below at 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int MaxRelu(int a, int b) => Math.Max(Math.Max(a, b), 0);

    /// <summary>min.s16x2 / min.u16x2 with optional .relu (signed only): per 16-bit lane.</summary>
    public static uint Min16x2(uint a, uint b, bool signed, bool relu) => Lanes16(a, b, signed, relu, false);

    /// <summary>max.s16x2 / max.u16x2 with optional .relu (signed only): per 16-bit lane.</summary>
    public static uint Max16x2(uint a, uint b, bool signed, bool relu) => Lanes16(a, b, signed, relu, true);

    private static uint Lanes16(uint a, uint b, bool signed, bool relu, bool max)
    {
        uint d = 0;
        for (int i = 0; i < 32; i += 16)
        {
            int x = signed ? (short)(a >> i) : (int)((a >> i) & 0xFFFF);
            int y = signed ? (short)(b >> i) : (int)((b >> i) & 0xFFFF);
            int v = max ? Math.Max(x, y) : Math.Min(x, y);
            if (relu && v < 0)
            {
                v = 0;
            }

            d |= ((uint)v & 0xFFFF) << i;
        }

        return d;
    }

    /// <summary>setp on signed integers; Lo/Ls/Hi/Hs compare the same bits as unsigned.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Compare(CompareOp op, long a, long b) => op switch
    {
        CompareOp.Eq => a == b,
        CompareOp.Ne => a != b,
        CompareOp.Lt => a < b,
        CompareOp.Le => a <= b,
        CompareOp.Gt => a > b,
        CompareOp.Ge => a >= b,
        CompareOp.Lo => (ulong)a < (ulong)b,
        CompareOp.Ls => (ulong)a <= (ulong)b,
        CompareOp.Hi => (ulong)a > (ulong)b,
        CompareOp.Hs => (ulong)a >= (ulong)b,
        _ => ThrowNotInteger(op),
    };

    /// <summary>setp on unsigned integers: Lt/Le/Gt/Ge mean the same as Lo/Ls/Hi/Hs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Compare(CompareOp op, ulong a, ulong b) => op switch
    {
        CompareOp.Eq => a == b,
        CompareOp.Ne => a != b,
        CompareOp.Lt or CompareOp.Lo => a < b,
        CompareOp.Le or CompareOp.Ls => a <= b,
        CompareOp.Gt or CompareOp.Hi => a > b,
        CompareOp.Ge or CompareOp.Hs => a >= b,
        _ => ThrowNotInteger(op),
    };

    private static bool ThrowNotInteger(CompareOp op) =>
        throw new ArgumentOutOfRangeException(nameof(op), op, "the unordered and NaN comparisons are for floats only");

    /// <summary>dp4a.atype.btype d, a, b, c: c plus the four products of a's and b's bytes, each byte signed or not as its type says.</summary>
    public static int Dp4a(int a, int b, int c, bool aSigned, bool bSigned)
    {
        var sum = c;
        for (var k = 0; k < 32; k += 8)
        {
            sum += Byte(a, k, aSigned) * Byte(b, k, bSigned);
        }

        return sum;
    }

    /// <summary>dp2a.lo/hi.atype.btype d, a, b, c: c plus the products of a's two 16-bit halves and two of b's bytes (the low two, or the high two).</summary>
    public static int Dp2a(int a, int b, int c, bool aSigned, bool bSigned, bool high)
    {
        var first = high ? 16 : 0;
        var a0 = aSigned ? (short)a : (int)(ushort)a;
        var a1 = aSigned ? (short)(a >> 16) : (int)(ushort)(a >> 16);
        return c + (a0 * Byte(b, first, bSigned)) + (a1 * Byte(b, first + 8, bSigned));
    }

    private static int Byte(int x, int shift, bool signed) => signed ? (sbyte)(x >> shift) : (byte)(x >> shift);
}
