using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace GpuPool.Ptx.Engine;

/// <summary>
/// One block at a time on one worker: its threads' resume points and spill slots, its shared memory and their local
/// memory. Runs every thread until it exits or waits at a collective instruction, then lets the collectives whose
/// threads have all arrived go, until the block is done; a block whose threads can go no further is a deadlock.
/// </summary>
internal sealed unsafe class BlockState : IDisposable
{
    public const int Waiting = -3;

    private readonly CompiledKernel _kernel;
    private readonly LaneContext _context;
    private readonly int[] _resume;
    private readonly int[] _at;
    private readonly int _threads;
    private readonly byte* _shared;
    private readonly byte* _local;
    private readonly uint[] _tid;
    private readonly bool[] _plainBarrier;

    /// <summary>Per barrier (0–15): the bar.arrive arrivals that its waiting threads have not yet used.</summary>
    private readonly int[] _arrivals = new int[16];

    /// <summary>Whether the kernel's vector method runs this launch's threads, eight at a time (a block a multiple of 8).</summary>
    private readonly Func<LaneContext, int, int>? _vector;

    /// <summary>Per group of eight: whether it runs in the vector method (until its threads diverge).</summary>
    private readonly bool[] _inVector;
    private readonly int[] _groupIds;

    private readonly uint _blockX, _blockY, _blockZ;
    private readonly ulong _dynamicShared;
    private int _freed;

    public BlockState(CompiledKernel kernel, PtxLaunch launch, LaunchControl control, byte* parameters, ulong[] symbols)
    {
        _kernel = kernel;
        (_blockX, _blockY, _blockZ, _dynamicShared) = (launch.BlockX, launch.BlockY, launch.BlockZ, launch.DynamicSharedBytes);
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

        // bar.sync 0: every live thread of the block, which the block runner lets go in one pass when all are there.
        _plainBarrier = [.. kernel.Collectives.Select(c => c is { Kind: SiteKind.Barrier, Sources: [{ IsRegister: false, Immediate: 0 }] })];
        // Eight consecutive threads of a block whose x dimension is a multiple of 8 share their y and z and count up in x:
        // what the vector code assumes (SimdCompiler's uniform registers).
        _vector = launch.BlockX % Simd.Lanes == 0 ? kernel.Vector : null;
        _inVector = new bool[_threads / Simd.Lanes];
        _groupIds = new int[_vector is null ? 0 : 4 * _inVector.Length];
        for (var g = 0; g < _groupIds.Length / 4; g++)
        {
            var t = g * Simd.Lanes;
            (_groupIds[4 * g], _groupIds[(4 * g) + 1], _groupIds[(4 * g) + 2], _groupIds[(4 * g) + 3]) = ((int)_tid[3 * t], (int)_tid[(3 * t) + 1], (int)_tid[(3 * t) + 2], t & 31);
        }
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
            GroupIds = _groupIds,
            Resume = _resume,
            At = _at,
            InVector = _inVector,
            VectorSpill = new Vector256<long>[kernel.Vector is null || _threads % Simd.Lanes != 0 ? 0 : 2 * kernel.RegisterCount * (_threads / Simd.Lanes)],
        };
    }

    /// <summary>Runs block (x, y, z) to its end.</summary>
    public void Run(uint x, uint y, uint z)
    {
        var c = _context;
        (c.CtaX, c.CtaY, c.CtaZ) = (x, y, z);
        c.Output?.Clear();
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
        Array.Clear(_arrivals);
        Array.Fill(_inVector, _vector is not null);
        var live = _threads;
        while (live > 0)
        {
            var ran = false;
            var atBarrier = 0;
            if (_vector is not null)
            {
                // The groups that run as vectors, one after another in the vector method, each to its next barrier or
                // its end; a group whose threads diverge leaves them to the scalar pass below.
                c.Group = -1;
                (c.ArrivedInRound, c.ExitedInRound) = (0, 0);
                var resume = Simd.NextVectorGroup(c);
                if (resume >= 0)
                {
                    ran = true;
                    if (_vector(c, resume) == KernelCompiler.Stopped)
                    {
                        throw new PtxFault(PtxFaultKind.Timeout, $"kernel {_kernel.Name}: the launch ran past its deadline (or another block of it failed) and was stopped");
                    }

                    atBarrier += c.ArrivedInRound;
                    live -= c.ExitedInRound;
                }
            }

            // Every group still a vector (the common case): no thread to run alone, none to regroup.
            var allVector = _vector is not null && Array.IndexOf(_inVector, false) < 0;
            for (var t = allVector ? _threads : 0; t < _threads;)
            {
                if (_vector is not null && (t & (Simd.Lanes - 1)) == 0 && _inVector[t / Simd.Lanes])
                {
                    t += Simd.Lanes;
                    continue;
                }

                if (_at[t] != Waiting || _resume[t] < 0)
                {
                    t++;
                    continue;
                }

                ran = true;
                Point(t);
                var result = _kernel.Run(c, _resume[t]);
                while (result >= 0 && _kernel.Collectives[result].Kind == SiteKind.Arrive)
                {
                    // bar.arrive: counted, and the thread goes straight on.
                    Collectives.Arrive(this, t, result, _arrivals);
                    _resume[t] = result + 1;
                    result = _kernel.Run(c, _resume[t]);
                }

                atBarrier += Arrived(t, result, ref live);
                t++;
            }

            if (live == 0)
            {
                return;
            }

            // The common case, every live thread at a plain bar.sync (each having arrived in this round): all go on.
            if (atBarrier == live)
            {
                GoAll();
                if (!allVector)
                {
                    Regroup();
                }

                continue;
            }

            if (!Release() && !ran)
            {
                throw Deadlock();
            }
        }
    }

    /// <summary>Every live thread goes on after the collective it waits at (<see cref="Go"/>), eight at a time.</summary>
    private void GoAll()
    {
        ref var resume = ref MemoryMarshal.GetArrayDataReference(_resume);
        ref var at = ref MemoryMarshal.GetArrayDataReference(_at);
        var t = 0;
        for (; t + Simd.Lanes <= _threads; t += Simd.Lanes)
        {
            var r = Vector256.LoadUnsafe(ref resume, (nuint)t);
            var a = Vector256.LoadUnsafe(ref at, (nuint)t);
            var live = Vector256.GreaterThanOrEqual(r, Vector256<int>.Zero);
            Vector256.ConditionalSelect(live, a + Vector256<int>.One, r).StoreUnsafe(ref resume, (nuint)t);
            Vector256.ConditionalSelect(live, Vector256.Create(Waiting), a).StoreUnsafe(ref at, (nuint)t);
        }

        for (; t < _threads; t++)
        {
            if (_resume[t] >= 0)
            {
                Go(t);
            }
        }
    }

    /// <summary>Where thread <paramref name="t"/> got to: exited, stopped, or at collective <paramref name="result"/> (1 if a plain barrier).</summary>
    private int Arrived(int t, int result, ref int live)
    {
        if (result == KernelCompiler.Exited)
        {
            _resume[t] = -1;
            live--;
            return 0;
        }

        if (result < 0)
        {
            throw new PtxFault(PtxFaultKind.Timeout, $"kernel {_kernel.Name}: the launch ran past its deadline (or another block of it failed) and was stopped");
        }

        _at[t] = result;
        return _plainBarrier[result] ? 1 : 0;
    }

    /// <summary>After a barrier: a group of eight whose threads all go on from the same place runs as a vector again.</summary>
    private void Regroup()
    {
        if (_vector is null)
        {
            return;
        }

        for (var g = 0; g < _inVector.Length; g++)
        {
            if (_inVector[g])
            {
                continue;
            }

            var t = g * Simd.Lanes;
            var resume = _resume[t];
            var same = resume > 0 && resume <= _kernel.Collectives.Length;
            for (var l = 1; l < Simd.Lanes && same; l++)
            {
                same = _resume[t + l] == resume && _at[t + l] == Waiting;
            }

            // Threads that went their own ways may hold values in registers the vector code keeps as one scalar (the
            // same for all eight, or stepping by a constant from lane to lane) that do not follow that shape (each
            // written the same way, but on different paths): then they stay apart.
            var spill = _context.Spill;
            var registers = _kernel.RegisterCount;
            foreach (var (r, stride, wide) in same ? _kernel.VectorScalarsAfter[resume - 1] : [])
            {
                var first = spill[(t * registers) + r];
                for (var l = 1; l < Simd.Lanes && same; l++)
                {
                    var expected = first + (ulong)(stride * l);
                    var value = spill[((t + l) * registers) + r];
                    same = wide ? value == expected : (uint)value == (uint)expected;
                }
            }

            if (same && _at[t] == Waiting)
            {
                // It resumes from its threads' scalar slots: the vector method's second set of resume points.
                _inVector[g] = true;
                for (var l = 0; l < Simd.Lanes; l++)
                {
                    _resume[t + l] += _kernel.Collectives.Length;
                }
            }
        }
    }

    /// <summary>A kernel without collectives: each thread (or group of eight) from its start to its end, in order.</summary>
    private void RunToEnd()
    {
        var c = _context;
        if (_vector is not null)
        {
            // The vector method goes on from group to group itself, and comes back when a group's threads diverge (they
            // go on alone here, then the next group in the vector method again) or the block is done.
            for (var t = 0; t < _threads;)
            {
                PointGroup(t);
                var group = _vector(c, 0);
                if (group != KernelCompiler.Left)
                {
                    Finish(group);
                    return;
                }

                t = c.GroupBase;
                for (var l = 0; l < Simd.Lanes; l++)
                {
                    Point(t + l);
                    Finish(_kernel.Run(c, _resume[t + l]));
                }

                t += Simd.Lanes;
            }

            return;
        }

        var thread = 0;
        for (uint z = 0; z < c.NtidZ; z++)
        {
            for (uint y = 0; y < c.NtidY; y++)
            {
                for (uint x = 0; x < c.NtidX; x++, thread++)
                {
                    (c.TidX, c.TidY, c.TidZ, c.Lane) = (x, y, z, thread);
                    c.Local = _local + ((ulong)thread * _kernel.LocalBytes);
                    Finish(_kernel.Run(c, 0));
                }
            }
        }
    }

    private void Finish(int result)
    {
        if (result == KernelCompiler.Stopped)
        {
            throw new PtxFault(PtxFaultKind.Timeout, $"kernel {_kernel.Name}: the launch ran past its deadline (or another block of it failed) and was stopped");
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

        // A barrier goes when all it waits for have arrived.
        return Collectives.Barriers(this, _arrivals);
    }

    private PtxFault Deadlock()
    {
        var stuck = Enumerable.Range(0, _threads).Where(t => _resume[t] >= 0).ToArray();
        var sites = stuck.GroupBy(t => _at[t]).Select(g => $"{g.Count()} at {_kernel.Collectives[g.Key].Where}");
        return new PtxFault(PtxFaultKind.Deadlock, $"kernel {_kernel.Name}, block ({_context.CtaX},{_context.CtaY},{_context.CtaZ}): its threads wait at barriers or warp-wide instructions that the rest never reach ({string.Join("; ", sites)}; {_threads - stuck.Length} have exited)");
    }

    /// <summary>Points the context at the group of eight threads from <paramref name="t"/>.</summary>
    private void PointGroup(int t)
    {
        // The vector code reads only these; a fault in it points the context at the thread that made it.
        var c = _context;
        var g = t / Simd.Lanes;
        c.GroupBase = t;
        c.Group = g;
        (c.GroupTidX, c.GroupTidY, c.GroupTidZ, c.GroupLane) = (_groupIds[4 * g], _groupIds[(4 * g) + 1], _groupIds[(4 * g) + 2], _groupIds[(4 * g) + 3]);
    }

    /// <summary>Points the context's thread fields at thread <paramref name="t"/> (a fault's message names it).</summary>
    public void PointAt(int t) => Point(t);

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
        => (_context.Output?.Length ?? 0) == 0 && _context.Dropped == 0 ? null : (_context.Output?.ToString() ?? "", _context.Dropped);

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

    /// <summary>Whether this state can run a block of <paramref name="launch"/> (another launch of its kernel): the same block shape and shared memory.</summary>
    public bool Fits(PtxLaunch launch)
        => launch.BlockX == _blockX && launch.BlockY == _blockY && launch.BlockZ == _blockZ && launch.DynamicSharedBytes == _dynamicShared;

    /// <summary>
    /// Points this state, kept from an earlier launch of its kernel, at launch <paramref name="launch"/>: its grid, its
    /// parameters, memory, module variables and stop flag. The site cache is emptied: an allocation it remembers may be gone.
    /// </summary>
    public BlockState Rebind(PtxLaunch launch, LaunchControl control, byte* parameters, ulong[] symbols)
    {
        var c = _context;
        (c.NctaX, c.NctaY, c.NctaZ) = (launch.GridX, launch.GridY, launch.GridZ);
        c.Params = parameters;
        (c.Symbols, c.Memory, c.Control) = (symbols, launch.Memory, control);
        Array.Clear(c.SiteCache);
        return this;
    }

    /// <summary>
    /// Lets go of what belongs to the launch that ran on this state (the lease's memory, the module's variables, the
    /// stop flag, the parameter block, freed when the launch returns), before it is kept for the kernel's next launch.
    /// </summary>
    public BlockState Detach()
    {
        var c = _context;
        c.Params = null;
        (c.Symbols, c.Memory, c.Control) = ([], null!, null!);
        return this;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _freed, 1) == 0)
        {
            NativeMemory.AlignedFree(_shared);
            NativeMemory.AlignedFree(_local);
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>A state kept for the next launch (<see cref="PtxKernel"/>) goes with its kernel: its native memory with it.</summary>
    ~BlockState()
    {
        Dispose();
    }
}
