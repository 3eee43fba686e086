using System.Runtime.InteropServices;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Engine;

/// <summary>A launch's geometry, its parameter block, the memory it may touch and how it may run.</summary>
public sealed record PtxLaunch(
    uint GridX,
    uint GridY,
    uint GridZ,
    uint BlockX,
    uint BlockY,
    uint BlockZ,
    ulong DynamicSharedBytes,
    IPtxMemory Memory)
{
    /// <summary>How many blocks run at once (the device's workers).</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>When the launch must be over; past it, it stops with <see cref="PtxFaultKind.Timeout"/>.</summary>
    public TimeSpan Deadline { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// Where the text the launch's threads print (device printf, <c>vprintf</c>) goes: called once when the launch ends,
    /// whether it succeeded or failed, with all of it, block after block in the order of their linear index and each
    /// block's lines in the order its threads printed them; not called when nothing was printed.
    /// </summary>
    public Action<string>? Printf { get; init; }

    /// <summary>The shared memory a block may have, static and dynamic together; a launch asking more is refused.</summary>
    public ulong SharedLimit { get; init; } = ulong.MaxValue;
}

/// <summary>
/// A PTX module read for the cpu backend. <see cref="CheckAll"/> tells at load whether the engine runs every kernel
/// (refusing the first it does not, naming the instruction, the kernel and the line); each kernel's code is kept from its
/// first launch on, since a library carries hundreds of kernels a program never launches and their code is large.
/// <see cref="CompileAll"/> compiles and keeps every kernel at once.
/// </summary>
public sealed class PtxModuleProgram
{
    private readonly Dictionary<string, PtxKernel> _kernels;
    private object? _verdict;

    private PtxModuleProgram(IReadOnlyList<string> variables, Dictionary<string, PtxKernel> kernels)
    {
        Variables = variables;
        _kernels = kernels;
    }

    /// <summary>The module's .global and .const variables, in the order a launch's symbol addresses give them.</summary>
    public IReadOnlyList<string> Variables { get; }

    public IReadOnlyDictionary<string, PtxKernel> Kernels => _kernels;

    /// <summary>Reads PTX text; <see cref="PtxSyntaxException"/> if it is malformed.</summary>
    public static PtxModuleProgram Compile(string ptx) => Compile(PtxParser.Parse(ptx));

    public static PtxModuleProgram Compile(PtxProgram program)
    {
        var layout = new ModuleLayout(program);
        var kernels = new Dictionary<string, PtxKernel>(StringComparer.Ordinal);
        foreach (var f in program.Functions.Where(f => f.IsEntry && f.Body is not null))
        {
            kernels[f.Name] = new PtxKernel(layout, f);
        }

        return new PtxModuleProgram(layout.GlobalNames, kernels);
    }

    /// <summary>Compiles every kernel now; <see cref="PtxNotSupportedException"/> for the first the engine does not run.</summary>
    public PtxModuleProgram CompileAll()
    {
        foreach (var k in _kernels.Values)
        {
            k.EnsureCompiled();
        }

        return this;
    }

    /// <summary>
    /// Checks that the engine runs every kernel, compiling on up to <paramref name="parallelism"/> threads and keeping
    /// nothing; <see cref="PtxNotSupportedException"/> for the first kernel of the module (in its order) it does not run
    /// or cannot compile.
    /// </summary>
    public void CheckAll(int parallelism)
    {
        // Once per program: a module loaded again (PtxProgramCache) gets the same verdict at once.
        lock (_kernels)
        {
            _verdict ??= Verdict(parallelism);
        }

        if (_verdict is PtxNotSupportedException refusal)
        {
            throw refusal;
        }
    }

    /// <summary>The first refusal in the module's order, or a non-exception marker when the engine runs every kernel.</summary>
    private object Verdict(int parallelism)
    {
        var kernels = _kernels.Values.ToArray();
        var refusals = new PtxNotSupportedException?[kernels.Length];

        // Break(i) lets every kernel before i finish its check, so the refusal reported is the module's first, whatever the threads' order.
        Parallel.For(0, kernels.Length, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, parallelism) }, (i, loop) =>
        {
            try
            {
                kernels[i].Check();
            }
            catch (Exception ex)
            {
                // What the compiler throws other than a refusal (IL it cannot finish, as for a branch to a label the
                // kernel never defines) is the module's fault too, and the load says so naming the kernel.
                refusals[i] = ex as PtxNotSupportedException
                    ?? new PtxNotSupportedException($"kernel {kernels[i].Name}: the cpu backend's PTX engine cannot compile it ({ex.Message})");
                loop.Break();
            }
        });

        return refusals.FirstOrDefault(r => r is not null) ?? (object)"every kernel runs";
    }
}

/// <summary>A compiled kernel: launched with a parameter block laid out as cuLaunchKernel lays it out.</summary>
/// <remarks>Device printf text is kept per block and handed over block after block, up to <see cref="DevicePrintf.LaunchLimit"/> characters.</remarks>
public sealed class PtxKernel
{
    private readonly Lazy<CompiledKernel> _compiled;

    private readonly ModuleLayout _layout;
    private readonly PtxFunction _function;

    /// <summary>
    /// Workers' block states from earlier launches, for the next (<see cref="BlockState.Rebind"/>): up to four, so a
    /// launch over a few workers makes none.
    /// </summary>
    private readonly BlockState?[] _spares = new BlockState?[4];

    internal PtxKernel(ModuleLayout layout, PtxFunction function)
    {
        Name = function.Name;
        ParameterBytes = KernelCompiler.ParameterLayout(function).Bytes;
        (_layout, _function) = (layout, function);
        _compiled = new Lazy<CompiledKernel>(() => KernelCompiler.Compile(layout, function));
    }

    public string Name { get; }

    public int ParameterBytes { get; }

    /// <summary>Whether the kernel has vector code (<see cref="SimdCompiler"/>) besides its scalar code; compiles it.</summary>
    internal bool Vectorised => _compiled.Value.Vector is not null;

    /// <summary>Compiles the kernel if it is not yet; <see cref="PtxNotSupportedException"/> if the engine does not run it.</summary>
    public void EnsureCompiled() => _ = _compiled.Value;

    /// <summary>
    /// Compiles the kernel to see that the engine runs it, and lets the code go (it is compiled again at the first launch);
    /// <see cref="PtxNotSupportedException"/> if the engine does not run it.
    /// </summary>
    public void Check()
    {
        if (!_compiled.IsValueCreated)
        {
            KernelCompiler.Check(_layout, _function);
        }
    }

    /// <summary>A kept block state of the launch's shape, or null; one of another shape is let go.</summary>
    private BlockState? TakeSpare(PtxLaunch launch)
    {
        for (var i = 0; i < _spares.Length; i++)
        {
            if (Interlocked.Exchange(ref _spares[i], null) is { } kept)
            {
                if (kept.Fits(launch))
                {
                    return kept;
                }

                kept.Dispose();
            }
        }

        return null;
    }

    private bool KeepSpare(BlockState state)
    {
        for (var i = 0; i < _spares.Length; i++)
        {
            if (Interlocked.CompareExchange(ref _spares[i], state, null) is null)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The printf text of a launch's blocks in block order, within the launch's limit, and a line for what was dropped.</summary>
    private static string Printed(System.Collections.Concurrent.ConcurrentDictionary<long, (string Text, long Dropped)> printed)
    {
        var text = new System.Text.StringBuilder();
        long dropped = 0;
        foreach (var (_, (block, lost)) in printed.OrderBy(p => p.Key))
        {
            dropped += lost;
            if (text.Length + block.Length <= DevicePrintf.LaunchLimit)
            {
                text.Append(block);
            }
            else
            {
                dropped += block.Length;
            }
        }

        if (dropped > 0)
        {
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $"[gpupool: {dropped} characters of device printf output did not fit the {DevicePrintf.LaunchLimit}-character buffer and were dropped]\n");
        }

        return text.ToString();
    }

    /// <summary>
    /// Runs the launch to its end, its blocks spread over <see cref="PtxLaunch.Parallelism"/> workers. <paramref name="symbols"/>
    /// are the device addresses of the module's variables (<see cref="PtxModuleProgram.Variables"/>). A fault of any thread
    /// stops every block and is thrown as <see cref="PtxFault"/>.
    /// </summary>
    public unsafe void Launch(PtxLaunch launch, ReadOnlySpan<byte> parameters, ulong[] symbols)
    {
        ArgumentNullException.ThrowIfNull(launch);
        var kernel = _compiled.Value;
        if (parameters.Length != kernel.ParameterBytes)
        {
            throw new ArgumentException($"kernel {Name} takes {kernel.ParameterBytes} bytes of parameters, but the launch passed {parameters.Length}", nameof(parameters));
        }

        var shared = KernelCompiler.Align(kernel.StaticSharedBytes, 16) + launch.DynamicSharedBytes;
        if (shared > launch.SharedLimit || launch.DynamicSharedBytes > launch.SharedLimit)
        {
            throw new ArgumentException($"kernel {Name} needs {kernel.StaticSharedBytes} bytes of static shared memory and the launch asks {launch.DynamicSharedBytes} dynamic, {shared} in all: over the device's {launch.SharedLimit} bytes per block", nameof(launch));
        }

        var blocks = (long)launch.GridX * launch.GridY * launch.GridZ;
        if (blocks == 0 || launch.BlockX * launch.BlockY * launch.BlockZ == 0)
        {
            throw new ArgumentException("a launch needs at least one block of at least one thread", nameof(launch));
        }

        var block = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(parameters.Length, 16), 16);
        try
        {
            parameters.CopyTo(new Span<byte>(block, parameters.Length));
            var control = new LaunchControl();
            using var deadline = DeadlineWatch.Start(control, launch.Deadline);
            var next = 0L;
            var done = 0L;
            var workers = (int)Math.Min(Math.Max(1, launch.Parallelism), blocks);
            var chunk = Math.Clamp(blocks / (workers * 16L), 1, 64);
            Exception? failure = null;
            var run = (nint)block;
            // Made when a block first prints: most launches print nothing, and a concurrent dictionary is not free.
            System.Collections.Concurrent.ConcurrentDictionary<long, (string Text, long Dropped)>? printed = null;

            void Work()
            {
                // One worker's state kept from the kernel's last launch, where it fits: a launch of a small grid costs
                // little more than its blocks.
                var state = TakeSpare(launch)?.Rebind(launch, control, (byte*)run, symbols)
                    ?? new BlockState(kernel, launch, control, (byte*)run, symbols);
                long b = -1;
                var ran = 0L;
                var clean = false;
                try
                {
                    // Runs of consecutive blocks: each worker's accesses stay sequential where the blocks' are (what the
                    // cores' prefetchers follow), and the shared counter is touched once a run.
                    for (long first; (first = Interlocked.Add(ref next, chunk) - chunk) < blocks;)
                    {
                        for (b = first; b < Math.Min(first + chunk, blocks) && Volatile.Read(ref control.Stop) == 0; b++)
                        {
                            var x = (uint)(b % launch.GridX);
                            var y = (uint)(b / launch.GridX % launch.GridY);
                            var z = (uint)(b / ((long)launch.GridX * launch.GridY));
                            state.Run(x, y, z);
                            Keep(b, state);
                            ran++;
                        }
                    }

                    clean = true;
                }
                catch (Exception ex)
                {
                    Keep(b, state);
                    Interlocked.CompareExchange(ref failure, ex, null);
                    Volatile.Write(ref control.Stop, 1);
                }
                finally
                {
                    Interlocked.Add(ref done, ran);

                    // Kept only after a clean run, where a slot is free (the others' memory goes now).
                    if (!clean || !KeepSpare(state.Detach()))
                    {
                        state.Dispose();
                    }
                }
            }

            void Keep(long b, BlockState state)
            {
                if (launch.Printf is not null && state.TakeOutput() is { } output)
                {
                    LazyInitializer.EnsureInitialized(ref printed)[b] = output;
                }
            }

            if (workers == 1)
            {
                Work();
            }
            else
            {
                var threads = Enumerable.Range(0, workers - 1).Select(_ => Task.Factory.StartNew(Work, TaskCreationOptions.LongRunning)).ToArray();
                Work();
                Task.WaitAll(threads);
            }

            if (printed is { IsEmpty: false })
            {
                launch.Printf!(Printed(printed));
            }

            if (control.DeadlinePassed && failure is null or PtxFault { Kind: PtxFaultKind.Timeout })
            {
                throw new PtxFault(PtxFaultKind.Timeout, $"kernel {Name}: the launch ran past its deadline of {launch.Deadline.TotalSeconds:0.###} s and was stopped");
            }

            if (failure is not null)
            {
                throw failure is PtxFault ? failure : new PtxFault(PtxFaultKind.Trap, $"kernel {Name} failed: {failure.Message}");
            }

            if (Volatile.Read(ref control.Stop) != 0 && Interlocked.Read(ref done) < blocks)
            {
                throw new PtxFault(PtxFaultKind.Timeout, $"kernel {Name}: the launch ran past its deadline of {launch.Deadline.TotalSeconds:0.###} s and was stopped");
            }
        }
        finally
        {
            NativeMemory.AlignedFree(block);
        }
    }
}
