using System.Runtime.CompilerServices;
using GpuPool.Ptx.Semantics;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// atom and red on a checked pointer: each returns the value the memory held before. Global memory is shared by the
/// blocks that run at once on the device's workers, so every one is a real atomic operation (a compare-exchange loop
/// where .NET has no single instruction).
/// </summary>
internal static unsafe class Atomics
{

    public static uint and_b32(nint p, uint v)
    {
        ref var cell = ref Unsafe.AsRef<uint>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (uint)(old & v);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static uint or_b32(nint p, uint v)
    {
        ref var cell = ref Unsafe.AsRef<uint>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (uint)(old | v);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static uint xor_b32(nint p, uint v)
    {
        ref var cell = ref Unsafe.AsRef<uint>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (uint)(old ^ v);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static uint exch_b32(nint p, uint v)
    {
        return Interlocked.Exchange(ref Unsafe.AsRef<uint>((void*)p), v);
    }

    public static uint cas_b32(nint p, uint compare, uint v) => Interlocked.CompareExchange(ref Unsafe.AsRef<uint>((void*)p), v, compare);

    public static uint add_u32(nint p, uint v) => unchecked(Interlocked.Add(ref Unsafe.AsRef<uint>((void*)p), v) - v);

    public static uint min_u32(nint p, uint v)
    {
        ref var cell = ref Unsafe.AsRef<uint>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (uint)(Math.Min(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static uint max_u32(nint p, uint v)
    {
        ref var cell = ref Unsafe.AsRef<uint>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (uint)(Math.Max(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static uint inc_u32(nint p, uint v)
    {
        ref var cell = ref Unsafe.AsRef<uint>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (uint)(old >= v ? 0u : old + 1);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static uint dec_u32(nint p, uint v)
    {
        ref var cell = ref Unsafe.AsRef<uint>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (uint)(old == 0 || old > v ? v : old - 1);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static uint exch_u32(nint p, uint v)
    {
        return Interlocked.Exchange(ref Unsafe.AsRef<uint>((void*)p), v);
    }

    public static uint cas_u32(nint p, uint compare, uint v) => Interlocked.CompareExchange(ref Unsafe.AsRef<uint>((void*)p), v, compare);

    public static int add_s32(nint p, int v) => unchecked(Interlocked.Add(ref Unsafe.AsRef<int>((void*)p), v) - v);

    public static int min_s32(nint p, int v)
    {
        ref var cell = ref Unsafe.AsRef<int>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (int)(Math.Min(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static int max_s32(nint p, int v)
    {
        ref var cell = ref Unsafe.AsRef<int>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (int)(Math.Max(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static int exch_s32(nint p, int v)
    {
        return Interlocked.Exchange(ref Unsafe.AsRef<int>((void*)p), v);
    }

    public static int cas_s32(nint p, int compare, int v) => Interlocked.CompareExchange(ref Unsafe.AsRef<int>((void*)p), v, compare);

    public static ulong and_b64(nint p, ulong v)
    {
        ref var cell = ref Unsafe.AsRef<ulong>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (ulong)(old & v);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static ulong or_b64(nint p, ulong v)
    {
        ref var cell = ref Unsafe.AsRef<ulong>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (ulong)(old | v);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static ulong xor_b64(nint p, ulong v)
    {
        ref var cell = ref Unsafe.AsRef<ulong>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (ulong)(old ^ v);
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static ulong exch_b64(nint p, ulong v)
    {
        return Interlocked.Exchange(ref Unsafe.AsRef<ulong>((void*)p), v);
    }

    public static ulong cas_b64(nint p, ulong compare, ulong v) => Interlocked.CompareExchange(ref Unsafe.AsRef<ulong>((void*)p), v, compare);

    public static ulong add_u64(nint p, ulong v) => unchecked(Interlocked.Add(ref Unsafe.AsRef<ulong>((void*)p), v) - v);

    public static ulong min_u64(nint p, ulong v)
    {
        ref var cell = ref Unsafe.AsRef<ulong>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (ulong)(Math.Min(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static ulong max_u64(nint p, ulong v)
    {
        ref var cell = ref Unsafe.AsRef<ulong>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (ulong)(Math.Max(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static ulong exch_u64(nint p, ulong v)
    {
        return Interlocked.Exchange(ref Unsafe.AsRef<ulong>((void*)p), v);
    }

    public static ulong cas_u64(nint p, ulong compare, ulong v) => Interlocked.CompareExchange(ref Unsafe.AsRef<ulong>((void*)p), v, compare);

    public static long add_s64(nint p, long v) => unchecked(Interlocked.Add(ref Unsafe.AsRef<long>((void*)p), v) - v);

    public static long min_s64(nint p, long v)
    {
        ref var cell = ref Unsafe.AsRef<long>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (long)(Math.Min(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static long max_s64(nint p, long v)
    {
        ref var cell = ref Unsafe.AsRef<long>((void*)p);
        while (true)
        {
            var old = Volatile.Read(ref cell);
            var next = (long)(Math.Max(old, v));
            if (Interlocked.CompareExchange(ref cell, next, old) == old)
            {
                return old;
            }
        }
    }

    public static long exch_s64(nint p, long v)
    {
        return Interlocked.Exchange(ref Unsafe.AsRef<long>((void*)p), v);
    }

    public static float add_f32(nint p, float v)
    {
        ref var cell = ref Unsafe.AsRef<int>((void*)p);
        while (true)
        {
            var oldBits = Volatile.Read(ref cell);
            var old = BitConverter.Int32BitsToSingle(oldBits);
            var next = BitConverter.SingleToInt32Bits(old + v);
            if (Interlocked.CompareExchange(ref cell, next, oldBits) == oldBits)
            {
                return old;
            }
        }
    }

    public static float min_f32(nint p, float v)
    {
        ref var cell = ref Unsafe.AsRef<int>((void*)p);
        while (true)
        {
            var oldBits = Volatile.Read(ref cell);
            var old = BitConverter.Int32BitsToSingle(oldBits);
            var next = BitConverter.SingleToInt32Bits(Fp32.Min(old, v));
            if (Interlocked.CompareExchange(ref cell, next, oldBits) == oldBits)
            {
                return old;
            }
        }
    }

    public static float max_f32(nint p, float v)
    {
        ref var cell = ref Unsafe.AsRef<int>((void*)p);
        while (true)
        {
            var oldBits = Volatile.Read(ref cell);
            var old = BitConverter.Int32BitsToSingle(oldBits);
            var next = BitConverter.SingleToInt32Bits(Fp32.Max(old, v));
            if (Interlocked.CompareExchange(ref cell, next, oldBits) == oldBits)
            {
                return old;
            }
        }
    }

    public static float exch_f32(nint p, float v)
    {
        return BitConverter.Int32BitsToSingle(Interlocked.Exchange(ref Unsafe.AsRef<int>((void*)p), BitConverter.SingleToInt32Bits(v)));
    }

    public static double add_f64(nint p, double v)
    {
        ref var cell = ref Unsafe.AsRef<long>((void*)p);
        while (true)
        {
            var oldBits = Volatile.Read(ref cell);
            var old = BitConverter.Int64BitsToDouble(oldBits);
            var next = BitConverter.DoubleToInt64Bits(old + v);
            if (Interlocked.CompareExchange(ref cell, next, oldBits) == oldBits)
            {
                return old;
            }
        }
    }

    public static double min_f64(nint p, double v)
    {
        ref var cell = ref Unsafe.AsRef<long>((void*)p);
        while (true)
        {
            var oldBits = Volatile.Read(ref cell);
            var old = BitConverter.Int64BitsToDouble(oldBits);
            var next = BitConverter.DoubleToInt64Bits(Fp64.Min(old, v));
            if (Interlocked.CompareExchange(ref cell, next, oldBits) == oldBits)
            {
                return old;
            }
        }
    }

    public static double max_f64(nint p, double v)
    {
        ref var cell = ref Unsafe.AsRef<long>((void*)p);
        while (true)
        {
            var oldBits = Volatile.Read(ref cell);
            var old = BitConverter.Int64BitsToDouble(oldBits);
            var next = BitConverter.DoubleToInt64Bits(Fp64.Max(old, v));
            if (Interlocked.CompareExchange(ref cell, next, oldBits) == oldBits)
            {
                return old;
            }
        }
    }

    public static double exch_f64(nint p, double v)
    {
        return BitConverter.Int64BitsToDouble(Interlocked.Exchange(ref Unsafe.AsRef<long>((void*)p), BitConverter.DoubleToInt64Bits(v)));
    }
}
