using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// What compiled kernel code sees of the thread it runs as: its ids, its block's shared memory, its own local memory,
/// the launch's parameters and module variables, and its registers' spill slots (where they wait across a barrier or a
/// warp-wide instruction). One per worker, pointed at each thread in turn; its fields are read by generated IL.
/// </summary>
internal sealed unsafe class LaneContext
{
    public ulong[] Spill = [];
    public int SpillBase;
    public uint TidX, TidY, TidZ;
    public uint NtidX, NtidY, NtidZ;
    public uint CtaX, CtaY, CtaZ;
    public uint NctaX, NctaY, NctaZ;
    public int Lane;

    /// <summary>In the vector code: the first of the eight threads it runs, and their ids and lanes.</summary>
    public int GroupBase;
    public int Group;

    /// <summary>Each group's registers where they wait at a barrier in the vector code: two vectors a register.</summary>
    public System.Runtime.Intrinsics.Vector256<long>[] VectorSpill = [];
    /// <summary>The first of the eight threads' ids and lane (the others follow in x and in lane).</summary>
    public int GroupTidX, GroupTidY, GroupTidZ, GroupLane;

    /// <summary>The block runner's state the vector code keeps up as it goes from group to group within a round.</summary>
    public int[] Resume = [], At = [];
    public bool[] InVector = [];
    public int ArrivedInRound, ExitedInRound;

    /// <summary>Each group's first thread's ids and lane, four a group (the block runner's).</summary>
    public int[] GroupIds = [];
    public byte* Shared;
    public ulong SharedBytes;
    public byte* Local;
    public ulong LocalBytes;

    /// <summary>Where the next called function's frame starts in the thread's local memory (its caller sets it).</summary>
    public ulong StackTop;

    /// <summary>What the threads of the block being run printed (device printf), in the order they printed it.</summary>
    public System.Text.StringBuilder? Output;
    public byte* Params;
    public ulong ParamBytes;
    public ulong[] Symbols = [];
    public IPtxMemory Memory = null!;
    public LaunchControl Control = null!;
    public BlockState Block = null!;
    public string Kernel = "";

    /// <summary>The allocation the last global access fell in: most accesses fall in the same one.</summary>
    public ulong LastStart, LastEnd;

    /// <summary>The site of the instruction being checked, for the fault's message (see <see cref="SiteNames"/>).</summary>
    public string[] SiteNames = [];

    public string ThreadName => $"thread ({TidX},{TidY},{TidZ}) of block ({CtaX},{CtaY},{CtaZ})";

    /// <summary>
    /// Each global or generic access site's own copy of the allocation it last fell in, as (start, length) pairs: most
    /// sites touch one allocation, and different sites often different ones.
    /// </summary>
    public long[] SiteCache = [];

    /// <summary>A global access its site's cache missed: checked against the lease's allocations, then cached for the site.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static nint GlobalMiss(LaneContext c, ulong address, int size, int site, int slot)
    {
        var p = c.GlobalSlow(address, size, site);
        c.SiteCache[slot] = (long)c.LastStart;
        c.SiteCache[slot + 1] = (long)(c.LastEnd - c.LastStart);
        return p;
    }

    /// <summary>A generic access its site's cache missed; a global one is cached for the site, a window's is not.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static nint GenericMiss(LaneContext c, ulong address, int size, int site, int slot)
    {
        var (start, end) = (c.LastStart, c.LastEnd);
        var p = c.GenericSlow(address, size, site);
        if ((c.LastStart, c.LastEnd) != (start, end) || (address >= c.LastStart && address < c.LastEnd))
        {
            c.SiteCache[slot] = (long)c.LastStart;
            c.SiteCache[slot + 1] = (long)(c.LastEnd - c.LastStart);
        }

        return p;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal nint GlobalSlow(ulong address, int size, int site)
    {
        CheckAligned(address, size, site, "global");
        if (Memory.TryFind(address, out var start, out var end) && address + (ulong)size <= end && address >= start)
        {
            (LastStart, LastEnd) = (start, end);
            return (nint)address;
        }

        throw Fault(PtxFaultKind.IllegalAddress, site, $"{size}-byte global access at 0x{address:x} is outside every allocation of the lease");
    }

    /// <summary>An address in the block's shared memory (an offset in the shared window), as a pointer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint SharedAt(LaneContext c, ulong offset, int size, int site)
    {
        if (offset + (ulong)size <= c.SharedBytes && offset < c.SharedBytes && (offset & (ulong)(size - 1)) == 0)
        {
            return (nint)(c.Shared + offset);
        }

        throw c.OutOfWindow("shared", offset, size, c.SharedBytes, site);
    }

    /// <summary>An address in the thread's local memory (an offset in the local window), as a pointer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint LocalAt(LaneContext c, ulong offset, int size, int site)
    {
        if (offset + (ulong)size <= c.LocalBytes && offset < c.LocalBytes && (offset & (ulong)(size - 1)) == 0)
        {
            return (nint)(c.Local + offset);
        }

        throw c.OutOfWindow("local", offset, size, c.LocalBytes, site);
    }

    /// <summary>An address in the kernel's parameters (an offset in the parameter window), as a pointer; read only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint ParamAt(LaneContext c, ulong offset, int size, int site)
    {
        if (offset + (ulong)size <= c.ParamBytes && offset < c.ParamBytes)
        {
            return (nint)(c.Params + offset);
        }

        throw c.OutOfWindow("parameter", offset, size, c.ParamBytes, site);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal nint GenericSlow(ulong address, int size, int site)
    {
        if (address - (ulong)Shared < SharedBytes)
        {
            return SharedAt(this, address - (ulong)Shared, size, site);
        }

        if (address - (ulong)Local < LocalBytes)
        {
            return LocalAt(this, address - (ulong)Local, size, site);
        }

        if (address - (ulong)Params < ParamBytes)
        {
            return ParamAt(this, address - (ulong)Params, size, site);
        }

        return GlobalSlow(address, size, site);
    }

    /// <summary>cvta to generic: a window's offset as the host address it has for this thread.</summary>
    public static ulong SharedToGeneric(LaneContext c, ulong offset) => (ulong)c.Shared + offset;

    public static ulong LocalToGeneric(LaneContext c, ulong offset) => (ulong)c.Local + offset;

    public static ulong ParamToGeneric(LaneContext c, ulong offset) => (ulong)c.Params + offset;

    /// <summary>cvta.to a window: a generic address as the window's offset (one outside the window stays outside it).</summary>
    public static ulong GenericToShared(LaneContext c, ulong address) => address - (ulong)c.Shared;

    public static ulong GenericToLocal(LaneContext c, ulong address) => address - (ulong)c.Local;

    public static ulong GenericToParam(LaneContext c, ulong address) => address - (ulong)c.Params;

    public static ulong Clock64(LaneContext c) => (ulong)Stopwatch.GetTimestamp();

    public static uint Clock(LaneContext c) => (uint)Stopwatch.GetTimestamp();

    public static ulong GlobalTimer(LaneContext c) => (ulong)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency));

    /// <summary>%activemask: the threads of this thread's warp that have not exited.</summary>
    public static uint ActiveMask(LaneContext c) => c.Block.LiveMask(c.Lane / 32);

    public static void Trap(LaneContext c, int site) => throw c.Fault(PtxFaultKind.Trap, site, "the kernel executed trap");

    public static void StackOverflow(LaneContext c, int site)
        => throw c.Fault(PtxFaultKind.IllegalAddress, site, $"the thread's call stack ({KernelCompiler.StackBytes} bytes) is full: the calls nest too deep");

    /// <summary>Device printf: formats from the format string and the packed arguments, both at generic addresses.</summary>
    public static int Printf(LaneContext c, long format, long arguments, int site)
    {
        var text = DevicePrintf.Format(
            ReadString(c, (ulong)format, site),
            (offset, size) => ReadScalar(c, (ulong)arguments + (ulong)offset, size, site),
            address => ReadString(c, address, site));
        c.Output ??= new();
        if (c.Output.Length + text.Length <= DevicePrintf.LaunchLimit)
        {
            c.Output.Append(text);
        }
        else
        {
            c.Dropped += text.Length;
        }

        return text.Length;
    }

    /// <summary>Characters of printf text this block could not keep (past <see cref="DevicePrintf.LaunchLimit"/>).</summary>
    public long Dropped;

    private static ulong ReadScalar(LaneContext c, ulong address, int size, int site)
    {
        var p = (byte*)c.GenericSlow(address, size, site);
        return size == 8 ? *(ulong*)p : *(uint*)p;
    }

    /// <summary>A NUL-terminated string at a generic address, each byte checked like any access (at most 64 KiB).</summary>
    private static string ReadString(LaneContext c, ulong address, int site)
    {
        if (address == 0)
        {
            return "(null)";
        }

        var bytes = new List<byte>();
        for (var at = address; bytes.Count < 1 << 16; at++)
        {
            var b = *(byte*)c.GenericSlow(at, 1, site);
            if (b == 0)
            {
                break;
            }

            bytes.Add(b);
        }

        return System.Text.Encoding.UTF8.GetString(bytes.ToArray());
    }

    private void CheckAligned(ulong address, int size, int site, string space)
    {
        if ((address & (ulong)(size - 1)) != 0)
        {
            throw Fault(PtxFaultKind.MisalignedAddress, site, $"{size}-byte {space} access at 0x{address:x} is not aligned to {size} bytes");
        }
    }

    private PtxFault OutOfWindow(string space, ulong offset, int size, ulong bytes, int site)
        => (offset & (ulong)(size - 1)) != 0 && offset < bytes
            ? Fault(PtxFaultKind.MisalignedAddress, site, $"{size}-byte {space} access at offset {offset} is not aligned to {size} bytes")
            : Fault(PtxFaultKind.IllegalAddress, site, $"{size}-byte {space} access at offset {offset} is outside the {bytes} bytes of {space} memory");

    internal PtxFault Fault(PtxFaultKind kind, int site, string what)
        => new(kind, $"kernel {Kernel}, {ThreadName}, {(site >= 0 && site < SiteNames.Length ? SiteNames[site] : "an instruction")}: {what}");
}

/// <summary>What every block of a launch watches: set to stop them all (deadline passed, or one block failed).</summary>
internal sealed class LaunchControl
{
    public int Stop;

    /// <summary>Set with <see cref="Stop"/> when it was the deadline that stopped the launch.</summary>
    public volatile bool DeadlinePassed;
}
