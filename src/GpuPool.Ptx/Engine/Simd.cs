using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuPool.Ptx.Engine;

/// <summary>A 64-bit register of eight threads: lanes 0–3 and 4–7.</summary>
internal struct Vec8L
{
    public Vector256<long> Lo;
    public Vector256<long> Hi;

    public Vec8L(Vector256<long> lo, Vector256<long> hi) => (Lo, Hi) = (lo, hi);

    public readonly long this[int lane] => lane < 4 ? Lo.GetElement(lane) : Hi.GetElement(lane - 4);
}

/// <summary>
/// What <see cref="SimdCompiler"/>'s code calls: each operation on eight threads' registers at once, and the memory
/// accesses of eight threads — one vector access where their addresses are consecutive, one scalar access where they are
/// the same, else each thread's own, each checked as the scalar code checks it and a fault named for its thread.
/// </summary>
internal static unsafe class Simd
{
    public const int Lanes = 8;

    // The ramps are written out where they are used: the JIT makes them constants (a static field would cost a check of
    // the class's initialisation in every method that reads it).

    // ---- registers -------------------------------------------------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> BroadcastI32(int value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> BroadcastF32(float value) => Vector256.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L BroadcastI64(long value) => new(Vector256.Create(value), Vector256.Create(value));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> AddI32(Vector256<int> a, Vector256<int> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SubI32(Vector256<int> a, Vector256<int> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MulI32(Vector256<int> a, Vector256<int> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MadI32(Vector256<int> a, Vector256<int> b, Vector256<int> c) => (a * b) + c;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> AndI32(Vector256<int> a, Vector256<int> b) => a & b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> OrI32(Vector256<int> a, Vector256<int> b) => a | b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> XorI32(Vector256<int> a, Vector256<int> b) => a ^ b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> ShlI32(Vector256<int> a, int count) => Vector256.ShiftLeft(a, count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> ShrU32(Vector256<int> a, int count) => Vector256.ShiftRightLogical(a, count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> ShrS32(Vector256<int> a, int count) => Vector256.ShiftRightArithmetic(a, count);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L AddI64(Vec8L a, Vec8L b) => new(a.Lo + b.Lo, a.Hi + b.Hi);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L SubI64(Vec8L a, Vec8L b) => new(a.Lo - b.Lo, a.Hi - b.Hi);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L ShlI64(Vec8L a, int count) => new(Vector256.ShiftLeft(a.Lo, count), Vector256.ShiftLeft(a.Hi, count));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L ShrU64(Vec8L a, int count) => new(Vector256.ShiftRightLogical(a.Lo, count), Vector256.ShiftRightLogical(a.Hi, count));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L ShrS64(Vec8L a, int count) => new(Vector256.ShiftRightArithmetic(a.Lo, count), Vector256.ShiftRightArithmetic(a.Hi, count));

    /// <summary>cvt.s64.s32 (and mul.wide's operands): each lane sign-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L WidenS32(Vector256<int> a)
    {
        var (lo, hi) = Vector256.Widen(a);
        return new(lo, hi);
    }

    /// <summary>cvt.u64.u32: each lane zero-extended.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L WidenU32(Vector256<int> a)
    {
        var (lo, hi) = Vector256.Widen(a.AsUInt32());
        return new(lo.AsInt64(), hi.AsInt64());
    }

    /// <summary>cvt.u32.u64 and its kin: each lane's low 32 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> NarrowI64(Vec8L a) => Vector256.Narrow(a.Lo, a.Hi);

    /// <summary>mul.wide.s32: 32 × 32 → 64 bits, signed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L MulWideS32(Vector256<int> a, Vector256<int> b)
    {
        var (a0, a1) = (WidenS32(a), WidenS32(b));
        return Avx2.IsSupported
            ? new(Avx2.Multiply(a0.Lo.AsInt32(), a1.Lo.AsInt32()), Avx2.Multiply(a0.Hi.AsInt32(), a1.Hi.AsInt32()))
            : new(a0.Lo * a1.Lo, a0.Hi * a1.Hi);
    }

    /// <summary>mul.wide.u32: 32 × 32 → 64 bits, unsigned.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L MulWideU32(Vector256<int> a, Vector256<int> b)
    {
        // vpmuludq multiplies the low 32 bits of each 64-bit lane into all 64: the widening product itself.
        var (a0, a1) = (WidenU32(a), WidenU32(b));
        return Avx2.IsSupported
            ? new(Avx2.Multiply(a0.Lo.AsUInt32(), a1.Lo.AsUInt32()).AsInt64(), Avx2.Multiply(a0.Hi.AsUInt32(), a1.Hi.AsUInt32()).AsInt64())
            : new(a0.Lo * a1.Lo, a0.Hi * a1.Hi);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> AddF32(Vector256<float> a, Vector256<float> b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SubF32(Vector256<float> a, Vector256<float> b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MulF32(Vector256<float> a, Vector256<float> b) => a * b;

    /// <summary>fma.rn.f32: one rounding, as the scalar code's MathF.FusedMultiplyAdd.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> FmaF32(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);

    /// <summary>div.rn.f32: one correctly rounded quotient, as the scalar code's division.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> DivF32(Vector256<float> a, Vector256<float> b) => a / b;

    /// <summary>sqrt.rn.f32: the correctly rounded root, NaN made canonical as the scalar code makes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SqrtF32(Vector256<float> a) => Canon(Vector256.Sqrt(a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> NegF32(Vector256<float> a) => (a.AsInt32() ^ Vector256.Create(int.MinValue)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> AbsF32(Vector256<float> a) => (a.AsInt32() & Vector256.Create(int.MaxValue)).AsSingle();

    /// <summary>min.f32 as <see cref="Semantics.Fp32.Min"/>: a NaN gives the other operand, two give the canonical NaN, -0 is below +0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MinF32(Vector256<float> a, Vector256<float> b)
        => PickF32(a, b, Vector256.LessThan(a, b) | (Vector256.Equals(a, b) & Vector256.LessThan(a.AsInt32(), Vector256<int>.Zero).AsSingle()));

    /// <summary>max.f32 as <see cref="Semantics.Fp32.Max"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> MaxF32(Vector256<float> a, Vector256<float> b)
        => PickF32(a, b, Vector256.GreaterThan(a, b) | (Vector256.Equals(a, b) & Vector256.GreaterThanOrEqual(a.AsInt32(), Vector256<int>.Zero).AsSingle()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PickF32(Vector256<float> a, Vector256<float> b, Vector256<float> takeA)
    {
        var (aNaN, bNaN) = (~Vector256.Equals(a, a), ~Vector256.Equals(b, b));
        var r = Vector256.ConditionalSelect(takeA, a, b);
        r = Vector256.ConditionalSelect(bNaN, a, r);
        r = Vector256.ConditionalSelect(aNaN, b, r);
        return Vector256.ConditionalSelect(aNaN & bNaN, Vector256.Create(0x7FFF_FFFF).AsSingle(), r);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Canon(Vector256<float> a) => Vector256.ConditionalSelect(~Vector256.Equals(a, a), Vector256.Create(0x7FFF_FFFF).AsSingle(), a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MinS32(Vector256<int> a, Vector256<int> b) => Vector256.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MaxS32(Vector256<int> a, Vector256<int> b) => Vector256.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MinU32(Vector256<int> a, Vector256<int> b) => Vector256.Min(a.AsUInt32(), b.AsUInt32()).AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MaxU32(Vector256<int> a, Vector256<int> b) => Vector256.Max(a.AsUInt32(), b.AsUInt32()).AsInt32();

    /// <summary>neg.s32 (wrapping: the negation of int.MinValue is itself, as PTX's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> NegS32(Vector256<int> a) => Vector256<int>.Zero - a;

    /// <summary>abs.s32 (the absolute value of int.MinValue is itself, as PTX's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> AbsS32(Vector256<int> a) => Vector256.ConditionalSelect(Vector256.LessThan(a, Vector256<int>.Zero), Vector256<int>.Zero - a, a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> NotI32(Vector256<int> a) => ~a;

    /// <summary>cvt.rn.f32.s32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> S32ToF32(Vector256<int> a) => Vector256.ConvertToSingle(a);

    /// <summary>
    /// cvt.rn.f32.u32: the high and low 16 bits are each exact as floats (the high scaled by 2^16), so their sum is
    /// rounded once, to nearest even, as the conversion is.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> U32ToF32(Vector256<int> a)
        => (Vector256.ConvertToSingle(Vector256.ShiftRightLogical(a, 16)) * 65536f) + Vector256.ConvertToSingle(a & Vector256.Create(0xFFFF));

    /// <summary>A comparison's lanes (all ones or zero) as predicates, 1 or 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Predicate(Vector256<int> mask) => mask & Vector256<int>.One;

    /// <summary>Comparison <paramref name="op"/> (lt, le, gt, ge, eq, ne, in PTX's order of them here) of each lane: all ones or zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<T> Compare<T>(Vector256<T> a, Vector256<T> b, int op) => op switch
    {
        0 => Vector256.LessThan(a, b),
        1 => Vector256.LessThanOrEqual(a, b),
        2 => Vector256.GreaterThan(a, b),
        3 => Vector256.GreaterThanOrEqual(a, b),
        4 => Vector256.Equals(a, b),
        _ => ~Vector256.Equals(a, b),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SetpS32(Vector256<int> a, Vector256<int> b, int op) => Predicate(Compare(a, b, op));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SetpU32(Vector256<int> a, Vector256<int> b, int op) => Predicate(Compare(a.AsUInt32(), b.AsUInt32(), op).AsInt32());

    /// <summary>setp on 64-bit integers, signed: the two halves' masks narrowed to the eight 32-bit predicates.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SetpS64(Vec8L a, Vec8L b, int op) => Predicate(Vector256.Narrow(Compare(a.Lo, b.Lo, op), Compare(a.Hi, b.Hi, op)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SetpU64(Vec8L a, Vec8L b, int op)
        => Predicate(Vector256.Narrow(Compare(a.Lo.AsUInt64(), b.Lo.AsUInt64(), op).AsInt64(), Compare(a.Hi.AsUInt64(), b.Hi.AsUInt64(), op).AsInt64()));

    /// <summary>setp on f32: ordered comparisons (false where either is NaN), and ne ordered too, as PTX's plain ne.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SetpF32(Vector256<float> a, Vector256<float> b, int op) => Predicate(op switch
    {
        0 => Vector256.LessThan(a, b).AsInt32(),
        1 => Vector256.LessThanOrEqual(a, b).AsInt32(),
        2 => Vector256.GreaterThan(a, b).AsInt32(),
        3 => Vector256.GreaterThanOrEqual(a, b).AsInt32(),
        4 => Vector256.Equals(a, b).AsInt32(),
        _ => (Vector256.LessThan(a, b) | Vector256.GreaterThan(a, b)).AsInt32(),
    });

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SelpI32(Vector256<int> a, Vector256<int> b, Vector256<int> p) => Vector256.ConditionalSelect(Vector256.Equals(p, Vector256<int>.Zero), b, a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SelpF32(Vector256<float> a, Vector256<float> b, Vector256<int> p) => Vector256.ConditionalSelect(Vector256.Equals(p, Vector256<int>.Zero).AsSingle(), b, a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> NotPred(Vector256<int> p) => p ^ Vector256<int>.One;

    /// <summary>1 if every lane's predicate holds, 0 if none does, -1 if they differ (the threads diverge).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Uniform(Vector256<int> p)
    {
        var bits = Vector256.ExtractMostSignificantBits(-p);
        return bits == 0xFF ? 1 : bits == 0 ? 0 : -1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> F32Bits(Vector256<float> a) => a.AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> BitsF32(Vector256<int> a) => a.AsSingle();

    // ---- spill slots: each thread's 64-bit slots, as the scalar code keeps them ------------------------------------

    public static void SpillI32(LaneContext c, Vector256<int> v, int register, int registers)
    {
        for (var l = 0; l < Lanes; l++)
        {
            c.Spill[((c.GroupBase + l) * registers) + register] = (ulong)(long)v.GetElement(l);
        }
    }

    public static void SpillI64(LaneContext c, Vec8L v, int register, int registers)
    {
        for (var l = 0; l < Lanes; l++)
        {
            c.Spill[((c.GroupBase + l) * registers) + register] = (ulong)v[l];
        }
    }

    public static Vector256<int> ReloadI32(LaneContext c, int register, int registers)
    {
        var s = c.Spill;
        var b = (c.GroupBase * registers) + register;
        return Vector256.Create(
            (int)s[b], (int)s[b + registers], (int)s[b + (2 * registers)], (int)s[b + (3 * registers)],
            (int)s[b + (4 * registers)], (int)s[b + (5 * registers)], (int)s[b + (6 * registers)], (int)s[b + (7 * registers)]);
    }

    public static Vec8L ReloadI64(LaneContext c, int register, int registers)
    {
        var s = c.Spill;
        var b = (c.GroupBase * registers) + register;
        return new(
            Vector256.Create((long)s[b], (long)s[b + registers], (long)s[b + (2 * registers)], (long)s[b + (3 * registers)]),
            Vector256.Create((long)s[b + (4 * registers)], (long)s[b + (5 * registers)], (long)s[b + (6 * registers)], (long)s[b + (7 * registers)]));
    }

    /// <summary>
    /// The first of the group's vector slots (two per register), where its registers wait at a barrier to go on as a
    /// vector: the stashes and unstashes of one barrier address their registers from it at constant offsets.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref Vector256<long> GroupSlots(LaneContext c, int registers) => ref c.VectorSpill[2 * c.Group * registers];

    // The register numbers below are the compiler's, each under the kernel's register count: inside the group's slots.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StashI32(ref Vector256<long> slots, Vector256<int> v, int register) => Unsafe.Add(ref slots, 2 * register) = v.AsInt64();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StashI64(ref Vector256<long> slots, Vec8L v, int register)
    {
        Unsafe.Add(ref slots, 2 * register) = v.Lo;
        Unsafe.Add(ref slots, (2 * register) + 1) = v.Hi;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> UnstashI32(ref Vector256<long> slots, int register) => Unsafe.Add(ref slots, 2 * register).AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L UnstashI64(ref Vector256<long> slots, int register) => new(Unsafe.Add(ref slots, 2 * register), Unsafe.Add(ref slots, (2 * register) + 1));

    /// <summary>A scalar register's first lane into the group's vector slot, where it waits at a barrier.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StashScalar(ref Vector256<long> slots, long bits, int register) => Unsafe.As<Vector256<long>, long>(ref Unsafe.Add(ref slots, 2 * register)) = bits;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long UnstashScalar(ref Vector256<long> slots, int register) => Unsafe.As<Vector256<long>, long>(ref Unsafe.Add(ref slots, 2 * register));

    /// <summary>Moves the context to the block's next group of eight; false when the block has none.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool NextGroup(LaneContext c)
    {
        var g = c.Group + 1;
        if (g * Lanes >= c.GroupIds.Length * 2)
        {
            return false;
        }

        c.Group = g;
        c.GroupBase = g * Lanes;
        (c.GroupTidX, c.GroupTidY, c.GroupTidZ, c.GroupLane) = (c.GroupIds[4 * g], c.GroupIds[(4 * g) + 1], c.GroupIds[(4 * g) + 2], c.GroupIds[(4 * g) + 3]);
        return true;
    }

    /// <summary>The threads leave the vector code before instruction exit <paramref name="exit"/>: each resumes there alone.</summary>
    public static int Leave(LaneContext c, int entry)
    {
        c.Resume.AsSpan(c.GroupBase, Lanes).Fill(entry);
        c.InVector[c.Group] = false;
        return KernelCompiler.Left;
    }

    /// <summary>The eight wait at (plain) barrier <paramref name="collective"/>.</summary>
    public static void Arrive(LaneContext c, int collective)
    {
        // GroupBase + 8 is within At (a slot per thread of a block whose groups are whole).
        Vector256.Create(collective).StoreUnsafe(ref MemoryMarshal.GetArrayDataReference(c.At), (nuint)c.GroupBase);
        c.ArrivedInRound += Lanes;
    }

    /// <summary>The eight have exited.</summary>
    public static void ExitGroup(LaneContext c)
    {
        c.Resume.AsSpan(c.GroupBase, Lanes).Fill(-1);
        c.ExitedInRound += Lanes;
    }

    /// <summary>
    /// Moves the context to the block's next group that runs as a vector and has not yet gone as far as it can this
    /// round; its resume point, or -1 when there is none.
    /// </summary>
    public static int NextVectorGroup(LaneContext c)
    {
        // Called once per group and barrier: the arrays are read without bounds checks, which hold by construction
        // (a block's At and Resume have a slot per thread, GroupIds four per group, InVector one per group).
        var groups = c.InVector.Length;
        ref var inVector = ref MemoryMarshal.GetArrayDataReference(c.InVector);
        ref var at = ref MemoryMarshal.GetArrayDataReference(c.At);
        ref var resume = ref MemoryMarshal.GetArrayDataReference(c.Resume);
        for (var g = c.Group + 1; g < groups; g++)
        {
            var t = g * Lanes;
            var r = Unsafe.Add(ref resume, t);
            if (r >= 0 && Unsafe.Add(ref inVector, g) && Unsafe.Add(ref at, t) == BlockState.Waiting)
            {
                c.Group = g;
                c.GroupBase = t;
                ref var ids = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(c.GroupIds), 4 * g);
                (c.GroupTidX, c.GroupTidY, c.GroupTidZ, c.GroupLane) = (ids, Unsafe.Add(ref ids, 1), Unsafe.Add(ref ids, 2), Unsafe.Add(ref ids, 3));
                return r;
            }
        }

        return -1;
    }

    // ---- scalar registers: a uniform or affine register's first lane -------------------------------------------

    /// <summary>The eight lanes of an affine 32-bit register: its first lane plus each lane's multiple of the stride (<paramref name="ramp"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> AffineI32(int first, Vector256<int> ramp) => Vector256.Create(first) + ramp;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec8L AffineI64(long first, Vector256<long> rampLo, Vector256<long> rampHi)
    {
        var b = Vector256.Create(first);
        return new(b + rampLo, b + rampHi);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstI32(Vector256<int> v) => v.ToScalar();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FirstF32(Vector256<float> v) => v.ToScalar();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long FirstI64(Vec8L v) => v.Lo.ToScalar();

    /// <summary>The last lane: what stays where eight threads store to one place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LastLane(Vector256<int> v) => v.GetElement(Lanes - 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float IntBitsF32(int bits) => BitConverter.Int32BitsToSingle(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int F32IntBits(float value) => BitConverter.SingleToInt32Bits(value);

    /// <summary>Whether an unsigned 32-bit index whose lanes step by <paramref name="stride"/> from <paramref name="first"/> stays in range over the eight (then its widening steps alike).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool WidensU32(int first, long stride) => (ulong)((long)(uint)first + (7 * stride)) <= uint.MaxValue;

    /// <summary>The same for a signed index.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool WidensS32(int first, long stride) => (long)first + (7 * stride) is >= int.MinValue and <= int.MaxValue;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ParamI32(LaneContext c, int offset) => *(int*)(c.Params + offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ParamI64(LaneContext c, int offset) => *(long*)(c.Params + offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ParamF32(LaneContext c, int offset) => *(float*)(c.Params + offset);

    /// <summary>An affine register's lanes into each thread's 64-bit slot, as the scalar code keeps them (32-bit values sign-extended).</summary>
    public static void SpillAffineI32(LaneContext c, long first, long stride, int register, int registers)
    {
        for (var l = 0; l < Lanes; l++)
        {
            c.Spill[((c.GroupBase + l) * registers) + register] = (ulong)(long)(int)(first + (stride * l));
        }
    }

    public static void SpillAffineI64(LaneContext c, long first, long stride, int register, int registers)
    {
        for (var l = 0; l < Lanes; l++)
        {
            c.Spill[((c.GroupBase + l) * registers) + register] = (ulong)(first + (stride * l));
        }
    }

    /// <summary>A scalar register from the group's first thread's slot (the block runner checked that the other seven follow it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ReloadScalar(LaneContext c, int register, int registers) => (long)c.Spill[(c.GroupBase * registers) + register];

    // ---- accesses at a scalar address: checked once for the eight -------------------------------------------------

    /// <summary>
    /// A site's cache missed at <paramref name="address"/>: it takes the allocation of the lease that holds the address,
    /// where one does (the access itself is then made and checked by the scalar code).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void Refill(LaneContext c, long address, int slot)
    {
        if (c.Memory.TryFind((ulong)address, out var start, out var end))
        {
            c.SiteCache[slot] = (long)start;
            c.SiteCache[slot + 1] = (long)(end - start);
        }
    }

    /// <summary>A 64-bit shared address as an offset in the window, or -1 (which fits no window) where it is past an int.</summary>
    public static int SharedOffset(long address) => (ulong)address <= int.MaxValue ? (int)address : -1;

    /// <summary>Whether [offset, offset + bytes) lies in the block's shared window, offset aligned to 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool SharedFits(LaneContext c, int offset, int bytes) => (ulong)(uint)offset + (ulong)bytes <= c.SharedBytes && (offset & 3) == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> LoadAt(long address) => Vector256.Load((int*)address);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreAt(long address, Vector256<int> value) => value.Store((int*)address);

    // ---- vector accesses (ld/st .v2 and .v4 of 32-bit words): lane l's vector at address + l × stride ------------

    /// <summary>Word <paramref name="k"/> of each lane's vector, the lanes' vectors <paramref name="stride"/> bytes apart from <paramref name="address"/>.</summary>
    public static Vector256<int> GatherWord(long address, int stride, int k)
    {
        var p = (byte*)address + (4 * k);
        return Vector256.Create(
            *(int*)p, *(int*)(p + stride), *(int*)(p + (2 * stride)), *(int*)(p + (3 * stride)),
            *(int*)(p + (4 * stride)), *(int*)(p + (5 * stride)), *(int*)(p + (6 * stride)), *(int*)(p + (7 * stride)));
    }

    public static Vector256<int> GatherSharedWord(LaneContext c, int offset, int stride, int k) => GatherWord((long)(c.Shared + (uint)offset), stride, k);

    /// <summary>Stores word <paramref name="k"/> of each lane's vector, lane by lane (where two lanes share an address the last one's stays).</summary>
    public static void ScatterWord(long address, int stride, int k, Vector256<int> value)
    {
        var p = (byte*)address + (4 * k);
        for (var l = 0; l < Lanes; l++)
        {
            *(int*)(p + (l * stride)) = value.GetElement(l);
        }
    }

    public static void ScatterSharedWord(LaneContext c, int offset, int stride, int k, Vector256<int> value) => ScatterWord((long)(c.Shared + (uint)offset), stride, k, value);

    /// <summary>Whether an address is a multiple of mask + 1 (a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Aligned(long address, int mask) => (address & mask) == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> LoadSharedAt(LaneContext c, int offset) => Vector256.Load((int*)(c.Shared + (uint)offset));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreSharedAt(LaneContext c, int offset, Vector256<int> value) => value.Store((int*)(c.Shared + (uint)offset));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadScalarAt(long address) => *(int*)address;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreScalarAt(long address, int value) => *(int*)address = value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadSharedScalar(LaneContext c, int offset) => *(int*)(c.Shared + (uint)offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreSharedScalar(LaneContext c, int offset, int value) => *(int*)(c.Shared + (uint)offset) = value;

    // ---- memory ----------------------------------------------------------------------------------------------

    /// <summary>A 4-byte global (or generic) load of eight threads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> LoadGlobal32(LaneContext c, Vec8L address, int site, int slot, bool generic)
    {
        var a0 = address.Lo.GetElement(0);
        return Consecutive4(address, a0) && Fits(c, a0, 32, slot) ? Vector256.Load((int*)a0) : LoadEach(c, address, site, slot, generic);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector256<int> LoadEach(LaneContext c, Vec8L address, int site, int slot, bool generic)
    {
        var values = stackalloc int[Lanes];
        for (var l = 0; l < Lanes; l++)
        {
            values[l] = *(int*)Checked(c, l, address[l], 4, site, slot, generic);
        }

        return Vector256.Load(values);
    }

    /// <summary>A 4-byte global (or generic) store of eight threads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreGlobal32(LaneContext c, Vec8L address, Vector256<int> value, int site, int slot, bool generic)
    {
        var a0 = address.Lo.GetElement(0);
        if (Consecutive4(address, a0) && Fits(c, a0, 32, slot))
        {
            value.Store((int*)a0);
            return;
        }

        StoreEach(c, address, value, site, slot, generic);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StoreEach(LaneContext c, Vec8L address, Vector256<int> value, int site, int slot, bool generic)
    {
        for (var l = 0; l < Lanes; l++)
        {
            *(int*)Checked(c, l, address[l], 4, site, slot, generic) = value.GetElement(l);
        }
    }

    /// <summary>A 4-byte shared load of eight threads at offsets of the block's shared window.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> LoadShared32(LaneContext c, Vector256<int> offset, int site)
    {
        var o0 = offset.GetElement(0);
        if ((ulong)(uint)o0 + 32 <= c.SharedBytes && (o0 & 3) == 0)
        {
            if (offset == Vector256.Create(o0) + Vector256.Create(0, 4, 8, 12, 16, 20, 24, 28))
            {
                return Vector256.Load((int*)(c.Shared + o0));
            }

            if (offset == Vector256.Create(o0))
            {
                return Vector256.Create(*(int*)(c.Shared + o0));
            }
        }

        return LoadSharedEach(c, offset, site);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector256<int> LoadSharedEach(LaneContext c, Vector256<int> offset, int site)
    {
        var values = stackalloc int[Lanes];
        for (var l = 0; l < Lanes; l++)
        {
            values[l] = *(int*)SharedChecked(c, l, offset.GetElement(l), site);
        }

        return Vector256.Load(values);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreShared32(LaneContext c, Vector256<int> offset, Vector256<int> value, int site)
    {
        var o0 = offset.GetElement(0);
        if ((ulong)(uint)o0 + 32 <= c.SharedBytes && (o0 & 3) == 0 && offset == Vector256.Create(o0) + Vector256.Create(0, 4, 8, 12, 16, 20, 24, 28))
        {
            value.Store((int*)(c.Shared + o0));
            return;
        }

        StoreSharedEach(c, offset, value, site);
    }

    /// <summary>
    /// Lane by lane, in order: where several threads store to one place, the last one's value stays, as on a GPU one of
    /// them does.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StoreSharedEach(LaneContext c, Vector256<int> offset, Vector256<int> value, int site)
    {
        for (var l = 0; l < Lanes; l++)
        {
            *(int*)SharedChecked(c, l, offset.GetElement(l), site) = value.GetElement(l);
        }
    }

    /// <summary>A 4-byte load of eight threads from the kernel's parameters at a constant offset checked when compiled.</summary>
    public static Vector256<int> LoadParam32(LaneContext c, int offset) => Vector256.Create(*(int*)(c.Params + offset));

    public static Vec8L LoadParam64(LaneContext c, int offset) => BroadcastI64(*(long*)(c.Params + offset));

    /// <summary>Whether the eight addresses are a0, a0 + 4, …, a0 + 28.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Consecutive4(Vec8L address, long a0)
    {
        var base0 = Vector256.Create(a0);
        return address.Lo == base0 + Vector256.Create(0L, 4, 8, 12) && address.Hi == base0 + Vector256.Create(16L, 20, 24, 28);
    }

    /// <summary>Whether [a0, a0 + bytes) lies in the allocation the site last hit, a0 aligned to 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Fits(LaneContext c, long a0, int bytes, int slot)
    {
        // The slot is one the compiler numbered, below the cache's length (2 × the kernel's cached sites).
        ref var entry = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(c.SiteCache), slot);
        var offset = (ulong)(a0 - entry);
        var span = (ulong)Unsafe.Add(ref entry, 1);
        return offset < span && span - offset >= (ulong)bytes && (a0 & 3) == 0;
    }

    /// <summary>
    /// Lane <paramref name="lane"/>'s access, checked as the scalar code checks it (a fault names that thread), its
    /// allocation then the site's cached one.
    /// </summary>
    private static nint Checked(LaneContext c, int lane, long address, int size, int site, int slot, bool generic)
    {
        Point(c, lane);
        return generic ? LaneContext.GenericMiss(c, (ulong)address, size, site, slot) : LaneContext.GlobalMiss(c, (ulong)address, size, site, slot);
    }

    private static nint SharedChecked(LaneContext c, int lane, int offset, int site)
    {
        Point(c, lane);
        return LaneContext.SharedAt(c, (uint)offset, 4, site);
    }

    /// <summary>Points the context's thread fields at lane <paramref name="lane"/> of the group, for a fault's message.</summary>
    private static void Point(LaneContext c, int lane) => c.Block.PointAt(c.GroupBase + lane);
}
