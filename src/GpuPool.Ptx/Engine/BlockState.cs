using System.Numerics;
using System.Runtime.InteropServices;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// One block at a time on one worker: its threads' resume points and spill slots, its shared memory and their local
/// memory. Runs every thread until it exits or waits at a collective instruction, then lets the collectives whose
/// threads have all arrived go, until the block is done; a block whose threads can go no further is a deadlock.
/// </summary>
internal sealed unsafe class BlockState : IDisposable
{
    private const int Waiting = -3;

    private readonly CompiledKernel _kernel;
    private readonly LaneContext _context;
    private readonly int[] _resume;
    private readonly int[] _at;
    private readonly int _threads;
    private readonly byte* _shared;
    private readonly byte* _local;
    private readonly uint[] _tid;
    private readonly bool[] _plainBarrier;

    public BlockState(CompiledKernel kernel, PtxLaunch launch, LaunchControl control, byte* parameters, ulong[] symbols)
    {
        _kernel = kernel;
        _threads = (int)(launch.BlockX * launch.BlockY * launch.BlockZ);
        _resume = new int[_threads];
        _at = new int[_threads];
        _tid = new uint[_threads * 3];
        for (var t = 0; t < _threads; t++)
        {
            _tid[3 * t] = (uint)t % launch.BlockX;
            _tid[(3 * t) + 1] = (uint)t / launch.BlockX % launch.BlockY;
            _tid[(3 * t) + 2] = (uint)t / (launch.BlockX * launch.BlockY);
        }

        _plainBarrier = [.. kernel.Collectives.Select(c => c.Kind == SiteKind.Barrier)];
        var sharedBytes = KernelCompiler.Align(kernel.StaticSharedBytes, 16) + launch.DynamicSharedBytes;
        _shared = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(sharedBytes, 16), 64);
        _local = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(kernel.LocalBytes * (ulong)_threads, 16), 64);
        _context = new LaneContext
        {
            Spill = new ulong[Math.Max(1, kernel.RegisterCount * _threads)],
            NtidX = launch.BlockX,
            NtidY = launch.BlockY,
            NtidZ = launch.BlockZ,
            NctaX = launch.GridX,
            NctaY = launch.GridY,
            NctaZ = launch.GridZ,
            Shared = _shared,
            SharedBytes = sharedBytes,
            LocalBytes = kernel.LocalBytes,
            Params = parameters,
            ParamBytes = (ulong)kernel.ParameterBytes,
            Symbols = symbols,
            Memory = launch.Memory,
            Control = control,
            Block = this,
            Kernel = kernel.Name,
            SiteNames = kernel.Sites,
            SiteCache = new long[Math.Max(2, 2 * kernel.CachedSites)],
        };
    }

    /// <summary>Runs block (x, y, z) to its end.</summary>
    public void Run(uint x, uint y, uint z)
    {
        var c = _context;
        (c.CtaX, c.CtaY, c.CtaZ) = (x, y, z);
        c.Output.Clear();
        c.Dropped = 0;
        new Span<byte>(_shared, (int)c.SharedBytes).Clear();
        if (_kernel.Collectives.Length == 0)
        {
            RunToEnd();
            return;
        }

        // A thread's slots are read only after it has written them at a collective: they need no clearing.
        Array.Clear(_resume);
        Array.Fill(_at, Waiting);
        var live = _threads;
        while (live > 0)
        {
            var ran = false;
            var atBarrier = 0;
            for (var t = 0; t < _threads; t++)
            {
                if (_at[t] != Waiting || _resume[t] < 0)
                {
                    continue;
                }

                ran = true;
                Point(t);
                var result = _kernel.Run(c, _resume[t]);
                if (result == KernelCompiler.Exited)
                {
                    _resume[t] = -1;
                    live--;
                }
                else if (result == KernelCompiler.Stopped)
                {
                    throw new PtxFault(PtxFaultKind.Timeout, $"kernel {_kernel.Name}: the launch ran past its deadline (or another block of it failed) and was stopped");
                }
                else
                {
                    _at[t] = result;
                    atBarrier += _plainBarrier[result] ? 1 : 0;
                }
            }

            if (live == 0)
            {
                return;
            }

            // The common case, every live thread at a plain bar.sync (each having arrived in this round): all go on.
            if (atBarrier == live)
            {
                for (var t = 0; t < _threads; t++)
                {
                    if (_resume[t] >= 0)
                    {
                        Go(t);
                    }
                }

                continue;
            }

            if (!Release() && !ran)
            {
                throw Deadlock();
            }
        }
    }

    /// <summary>A kernel without collectives: each thread from its start to its end, in order.</summary>
    private void RunToEnd()
    {
        var c = _context;
        var t = 0;
        for (uint z = 0; z < c.NtidZ; z++)
        {
            for (uint y = 0; y < c.NtidY; y++)
            {
                for (uint x = 0; x < c.NtidX; x++, t++)
                {
                    (c.TidX, c.TidY, c.TidZ, c.Lane) = (x, y, z, t);
                    c.Local = _local + ((ulong)t * _kernel.LocalBytes);
                    if (_kernel.Run(c, 0) == KernelCompiler.Stopped)
                    {
                        throw new PtxFault(PtxFaultKind.Timeout, $"kernel {_kernel.Name}: the launch ran past its deadline (or another block of it failed) and was stopped");
                    }
                }
            }
        }
    }

    /// <summary>Lets the waiting threads go where they can; whether any went.</summary>
    private bool Release()
    {
        var any = false;

        // Warp-wide instructions first: they need only their warp.
        for (var t = 0; t < _threads; t++)
        {
            if (_resume[t] >= 0 && _at[t] >= 0 && _kernel.Collectives[_at[t]].Kind is not (SiteKind.Barrier or SiteKind.BarrierReduce))
            {
                any |= Collectives.TryWarp(this, t);
            }
        }

        if (any)
        {
            return true;
        }

        // A barrier goes when every live thread of the block waits at one.
        var waiting = 0;
        var live = 0;
        for (var t = 0; t < _threads; t++)
        {
            if (_resume[t] >= 0)
            {
                live++;
                if (_at[t] >= 0 && _kernel.Collectives[_at[t]].Kind is SiteKind.Barrier or SiteKind.BarrierReduce)
                {
                    waiting++;
                }
            }
        }

        if (live == 0 || waiting != live)
        {
            return false;
        }

        Collectives.Barrier(this);
        return true;
    }

    private PtxFault Deadlock()
    {
        var stuck = Enumerable.Range(0, _threads).Where(t => _resume[t] >= 0).ToArray();
        var sites = stuck.GroupBy(t => _at[t]).Select(g => $"{g.Count()} at {_kernel.Collectives[g.Key].Where}");
        return new PtxFault(PtxFaultKind.Deadlock, $"kernel {_kernel.Name}, block ({_context.CtaX},{_context.CtaY},{_context.CtaZ}): its threads wait at barriers or warp-wide instructions that the rest never reach ({string.Join("; ", sites)}; {_threads - stuck.Length} have exited)");
    }

    /// <summary>Points the context at thread <paramref name="t"/>.</summary>
    private void Point(int t)
    {
        var c = _context;
        c.Lane = t;
        c.SpillBase = t * _kernel.RegisterCount;
        c.TidX = _tid[3 * t];
        c.TidY = _tid[(3 * t) + 1];
        c.TidZ = _tid[(3 * t) + 2];
        c.Local = _local + ((ulong)t * _kernel.LocalBytes);
    }

    /// <summary>What the last block run printed, and how many characters of it were dropped; null when nothing.</summary>
    public (string Text, long Dropped)? TakeOutput()
        => _context.Output.Length == 0 && _context.Dropped == 0 ? null : (_context.Output.ToString(), _context.Dropped);

    public int Threads => _threads;

    public CompiledKernel Kernel => _kernel;

    public ulong[] Spill => _context.Spill;

    public int[] At => _at;

    public int[] Resume => _resume;

    /// <summary>Thread <paramref name="t"/> goes on after the collective it waits at.</summary>
    public void Go(int t)
    {
        _resume[t] = _at[t] + 1;
        _at[t] = Waiting;
    }

    /// <summary>The threads of warp <paramref name="warp"/> that have not exited, as a lane mask.</summary>
    public uint LiveMask(int warp)
    {
        uint mask = 0;
        for (var lane = 0; lane < 32; lane++)
        {
            var t = (warp * 32) + lane;
            if (t < _threads && _resume[t] >= 0)
            {
                mask |= 1u << lane;
            }
        }

        return mask;
    }

    public static int Count(uint mask) => BitOperations.PopCount(mask);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_shared);
        NativeMemory.AlignedFree(_local);
    }
}
