using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using GpuPool.Client;
using GpuPool.Protocol.Errors;
using ErrorCode = GpuPool.Protocol.V1.ErrorCode;

namespace GpuPool.Shim.Internal;

/// <summary>
/// The process-wide state behind the exports: the one device session of the lease (opened by cuInit), the
/// device's cached properties, the handle tables, the contexts with each thread's stack of current contexts,
/// and the device allocations. Calls block on the SDK's tasks with a timeout, so a broker that stops answering
/// makes calls fail instead of hanging.
/// </summary>
internal sealed unsafe partial class Driver
{
    /// <summary>The driver API version the shim reports where the broker's backend has no driver (cpu): CUDA 12.8.</summary>
    public const int DefaultVersion = 12080;

    /// <summary>
    /// The driver version the program sees: the broker's on the cuda backend (a CUDA 13 runtime refuses a driver
    /// that says 12.8), else <see cref="DefaultVersion"/>; before cuInit, when no broker is known yet, the default.
    /// </summary>
    public static int Version => s_driver is { Session.Info.DriverVersion: > 0 and var version } ? version : DefaultVersion;

    private static readonly object InitGate = new();
    private static Driver? s_driver;
    private static CudaException? s_initError;
    private static string? s_lost;

    /// <summary>Set in a child the process forked after cuInit (pthread_atfork): the session is its parent's.</summary>
    private static volatile bool s_forkedChild;

    [ThreadStatic]
    private static List<Context>? t_stack;

    private readonly GpuPoolClient _client;
    private readonly Lease? _ownLease;

    private Driver(ShimConfig config, GpuPoolClient client, Lease? ownLease, DeviceSession session)
    {
        Config = config;
        _client = client;
        _ownLease = ownLease;
        Session = session;
        session.DeviceOutput = Libc.WriteStdout;
        Device = new DeviceProperties(session.Info);
        Primary = new Context(primary: true, flags: 0) { Destroyed = true };
        Primary.Handle = Contexts.Add(Primary);
        DefaultPool = new MemPoolObject();
        DefaultPool.Handle = MemPools.Add(DefaultPool);
    }

    public ShimConfig Config { get; }

    public DeviceSession Session { get; }

    public DeviceProperties Device { get; }

    /// <summary>Guards the contexts' resource sets and the primary context's reference count.</summary>
    public object Gate { get; } = new();

    public HandleTable<Context> Contexts { get; } = new(HandleKind.Context);

    public HandleTable<ModuleObject> Modules { get; } = new(HandleKind.Module);

    public HandleTable<FunctionObject> Functions { get; } = new(HandleKind.Function);

    public HandleTable<StreamObject> Streams { get; } = new(HandleKind.Stream);

    public HandleTable<EventObject> Events { get; } = new(HandleKind.Event);

    public AllocationMap Allocations { get; } = new();

    public HostMemory HostMemory { get; } = new();

    public HandleTable<MemPoolObject> MemPools { get; } = new(HandleKind.MemPool);

    /// <summary>The device's default memory pool, the only one there is (cuDeviceGetDefaultMemPool).</summary>
    public MemPoolObject DefaultPool { get; }

    public Context Primary { get; }

    public int PrimaryRefs { get; set; }

    /// <summary>The driver, once cuInit has succeeded and the session is alive.</summary>
    public static Driver Instance
    {
        get
        {
            if (s_forkedChild)
            {
                throw ForkedChild();
            }

            RefuseInHostFunction();
            var driver = s_driver ?? throw new CudaException(CuResult.NotInitialized, s_initError is { } e ? $"cuInit failed: {e.Message}" : "cuInit has not been called");
            if (Volatile.Read(ref s_lost) is { } lost)
            {
                throw new CudaException(CuResult.LaunchFailed, $"the device session is lost ({lost})");
            }

            return driver;
        }
    }

    /// <summary>The driver even when the session is lost: for destroy calls, which clean up what they can.</summary>
    public static Driver InstanceForCleanup
    {
        get
        {
            RefuseInHostFunction();
            return s_forkedChild ? throw ForkedChild() : s_driver ?? throw new CudaException(CuResult.NotInitialized, "cuInit has not been called");
        }
    }

    /// <summary>A host function or stream callback may not call CUDA: the driver's CUDA_ERROR_NOT_PERMITTED, and no deadlock on its own stream.</summary>
    private static void RefuseInHostFunction()
    {
        if (t_inHostFunction)
        {
            throw new CudaException(CuResult.NotPermitted, "a host function or stream callback may not call CUDA (cuLaunchHostFunc, cuStreamAddCallback)");
        }
    }

    public static bool IsInitialized => s_driver is not null;

    /// <summary>cuInit: reads the configuration and opens the device session, once; later calls return the first outcome.</summary>
    public static void Init()
    {
        if (s_forkedChild)
        {
            throw ForkedChild();
        }

        lock (InitGate)
        {
            if (s_driver is not null)
            {
                return;
            }

            if (s_initError is not null)
            {
                throw s_initError;
            }

            try
            {
                s_driver = Open();
                RegisterForkHandler();
            }
            catch (Exception ex)
            {
                var result = ex is CudaException c ? c.Result : CuResult.NoDevice;
                s_initError = new CudaException(result, ex is CudaException ? ex.Message : $"cannot open the device session: {ex.Message}");
                ShimLog.Always($"cuInit: {CuResultText.Name(result)}: {s_initError.Message}");
                throw s_initError;
            }
        }
    }

    private static Driver Open()
    {
        var config = ShimConfig.FromEnvironment();
        var client = new GpuPoolClient(config.Scheduler, config.ClientOptions with { Logger = ShimLog.Sdk });
        try
        {
            if (config.Lease is { } record)
            {
                var session = WaitFor(client.OpenSessionAsync(record, config.ReadToken(), config.Transport), config.Timeout, "opening the device session");
                return new Driver(config, client, null, session);
            }

            var lease = WaitFor(client.AllocateAsync(config.Request!), config.Timeout, "leasing a device");
            try
            {
                var session = WaitFor(lease.OpenSessionAsync(config.Transport), config.Timeout, "opening the device session");
                var driver = new Driver(config, client, lease, session);
                RegisterExitHandler();
                return driver;
            }
            catch
            {
                _ = lease.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(5));
                throw;
            }
        }
        catch (GpuPoolException ex)
        {
            client.Dispose();
            throw new CudaException(ex.Code is ErrorCode.Unauthenticated or ErrorCode.PermissionDenied ? CuResult.NotPermitted : CuResult.NoDevice, ex.Message);
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>From now on every call that needs the session fails with CUDA_ERROR_LAUNCH_FAILED; said once on stderr.</summary>
    public static void MarkLost(string reason)
    {
        if (s_driver is not null && Interlocked.CompareExchange(ref s_lost, reason, null) is null)
        {
            ShimLog.Always($"the device session is lost: {reason}. Every CUDA call fails with CUDA_ERROR_LAUNCH_FAILED from now on.");
        }
    }

    // ---- Current contexts ----

    private static List<Context> Stack => t_stack ??= [];

    /// <summary>The calling thread's current context, or CUDA_ERROR_INVALID_CONTEXT / CONTEXT_IS_DESTROYED.</summary>
    public static Context Current()
    {
        var stack = Stack;
        if (stack.Count == 0)
        {
            throw new CudaException(CuResult.InvalidContext, "no context is current on this thread (create one with cuCtxCreate, or retain the primary context and make it current)");
        }

        var ctx = stack[^1];
        if (ctx.Destroyed)
        {
            throw ctx.IsPrimary
                ? new CudaException(CuResult.InvalidContext, "the current context is the primary context, which has been released or reset")
                : new CudaException(CuResult.ContextIsDestroyed, "the current context has been destroyed");
        }

        return ctx;
    }

    public static Context? CurrentOrNull() => Stack is { Count: > 0 } s ? s[^1] : null;

    public static void SetCurrent(Context? ctx)
    {
        var stack = Stack;
        if (ctx is null)
        {
            if (stack.Count > 0)
            {
                stack.RemoveAt(stack.Count - 1);
            }
        }
        else if (stack.Count == 0)
        {
            stack.Add(ctx);
        }
        else
        {
            stack[^1] = ctx;
        }
    }

    public static void Push(Context ctx) => Stack.Add(ctx);

    public static Context? Pop()
    {
        var stack = Stack;
        if (stack.Count == 0)
        {
            return null;
        }

        var top = stack[^1];
        stack.RemoveAt(stack.Count - 1);
        return top;
    }

    /// <summary>Drops a destroyed context from this thread's stack (other threads find out at their next call).</summary>
    public static void Forget(Context ctx) => Stack.RemoveAll(c => ReferenceEquals(c, ctx));

    public Context ResolveContext(nint handle)
    {
        if (handle == 0 || !Contexts.TryGet(handle, out var ctx))
        {
            throw new CudaException(CuResult.InvalidContext, $"0x{(ulong)handle:x} is not a context (never created, or destroyed)");
        }

        return ctx;
    }

    /// <summary>
    /// Frees everything a context owns on the broker. Best effort: a lost session has already lost them, and the
    /// broker frees whatever is left when the lease ends.
    /// </summary>
    public void Release(Context ctx)
    {
        Runtime.ContextLocalStorage.RunDestructors(this, ctx);
        ulong[] allocations;
        ModuleObject[] modules;
        StreamObject[] streams;
        EventObject[] events;
        lock (Gate)
        {
            allocations = [.. ctx.Allocations];
            modules = [.. ctx.Modules];
            streams = [.. ctx.Streams];
            events = [.. ctx.Events];
            ctx.Allocations.Clear();
            ctx.Modules.Clear();
            ctx.Streams.Clear();
            ctx.Events.Clear();
        }

        // Host functions queued on the context's streams run before the streams go.
        foreach (var s in streams)
        {
            WaitHostCalls(s.Remote);
        }

        HostMemory.ForgetRegistrations(ctx);
        foreach (var ptr in allocations)
        {
            if (Allocations.Remove(ptr) is { Pool: { } pool } entry)
            {
                pool.Freed(entry.Size);
            }

            BestEffort(() => Session.FreeAsync(new DevicePtr(ptr)));
        }

        foreach (var m in modules)
        {
            RemoveModule(m);
            BestEffort(() => Session.UnloadModuleAsync(m.Remote));
        }

        foreach (var s in streams)
        {
            Streams.Remove(s.Handle);
            BestEffort(() => Session.DestroyStreamAsync(s.Remote));
            if (ForgetStream(s.Remote) is { } q)
            {
                BestEffort(() => Session.DestroyEventAsync(q));
            }
        }

        foreach (var e in events)
        {
            Events.Remove(e.Handle);
            BestEffort(() => Session.DestroyEventAsync(e.Remote));
        }
    }

    public void RemoveModule(ModuleObject module)
    {
        Modules.Remove(module.Handle);
        lock (Gate)
        {
            foreach (var f in module.Functions.Values)
            {
                Functions.Remove(f.Handle);
            }

            module.Functions.Clear();

            // Its variables go with it, on the broker too.
            module.Unloaded = true;
            foreach (var (address, _) in module.Globals.Values)
            {
                Allocations.Remove(address);
            }

            module.Globals.Clear();
        }
    }

    /// <summary>
    /// A module variable's address and size: asked of the broker once, then kept with the module, its range in the
    /// allocation map (as the module's, which cuMemFree refuses) so that copies to and from it pass the early checks.
    /// </summary>
    public (ulong Address, ulong Size) Global(ModuleObject module, string name)
    {
        lock (Gate)
        {
            if (module.Globals.TryGetValue(name, out var known))
            {
                return known;
            }
        }

        var global = Wait(Session.GetGlobalAsync(module.Remote, name), "cuModuleGetGlobal");
        var range = (global.Address.Address, global.Size);
        lock (Gate)
        {
            if (module.Globals.TryGetValue(name, out var raced))
            {
                return raced;
            }

            if (!module.Unloaded)
            {
                module.Globals[name] = range;
                Allocations.Add(range.Address, range.Size, module.Context, module: module);
            }
        }

        return range;
    }

    private void BestEffort(Func<Task> call)
    {
        if (Volatile.Read(ref s_lost) is not null)
        {
            return;
        }

        try
        {
            Wait(call(), "cleanup");
        }
        catch (Exception ex) when (ex is GpuPoolException or ShimTimeoutException)
        {
            if (ex is ShimTimeoutException or GpuPoolException { Code: ErrorCode.Unavailable or ErrorCode.LeaseEnded })
            {
                MarkLost(ex.Message);
            }
        }
    }

    // ---- Blocking on the SDK ----

    public T Wait<T>(Task<T> task, string what) => WaitFor(task, Config.Timeout, what);

    public void Wait(Task task, string what) => WaitFor(task, Config.Timeout, what);

    /// <summary>Fire-and-forget sends complete at once unless the connection pushes back; only then is there anything to wait for.</summary>
    public void Wait(ValueTask sent, string what)
    {
        if (!sent.IsCompletedSuccessfully)
        {
            WaitFor(sent.AsTask(), Config.Timeout, what);
        }
    }

    private static T WaitFor<T>(Task<T> task, TimeSpan timeout, string what)
    {
        WaitFor((Task)task, timeout, what);
        return task.Result;
    }

    private static void WaitFor(Task task, TimeSpan timeout, string what)
    {
        try
        {
            if (!task.Wait(timeout))
            {
                throw new ShimTimeoutException($"{what}: the broker did not answer within {timeout.TotalSeconds:0} s (GPUPOOL_SHIM_TIMEOUT)");
            }
        }
        catch (AggregateException ex) when (ex.InnerExceptions.Count == 1)
        {
            ExceptionDispatchInfo.Throw(ex.InnerExceptions[0]);
        }
    }

    // ---- Standalone mode: give the lease back when the program exits ----

    /// <summary>
    /// A lease has one device session, and a forked child shares its parent's connection: were the child to use
    /// it, the two processes' frames would interleave. So a child forked after cuInit gets CUDA_ERROR_NOT_INITIALIZED
    /// from every call, with one line saying why, and never touches the parent's session or lease (not even at exit).
    /// </summary>
    private static void RegisterForkHandler()
    {
        // pthread_atfork lives in libc_nonshared.a; the exported function it calls takes the DSO handle (null: none).
        var atFork = (delegate* unmanaged<delegate* unmanaged<void>, delegate* unmanaged<void>, delegate* unmanaged<void>, void*, int>)Libc.Function("__register_atfork");
        if (atFork is null || atFork(null, null, &OnForkedChild, null) != 0)
        {
            ShimLog.Always("could not register the fork handler; a child process that uses CUDA after fork would corrupt the parent's session");
        }
    }

    /// <summary>Runs in the child right after fork, on the forking thread: only a flag, nothing that could need another thread.</summary>
    [UnmanagedCallersOnly]
    private static void OnForkedChild() => s_forkedChild = true;

    private static CudaException ForkedChild()
    {
        const string Message = "this process was forked from the one that opened the lease's device session after cuInit; a lease serves one CUDA process, so the child cannot use CUDA (use CUDA only in the parent, or run the child under a gpupool run of its own)";
        ShimLog.OnceAlways("forked-child", Message);
        return new CudaException(CuResult.NotInitialized, Message);
    }

    private static void RegisterExitHandler()
    {
        // atexit itself is not exported by glibc (it lives in libc_nonshared.a); __cxa_atexit is what it calls.
        var cxaAtExit = (delegate* unmanaged<delegate* unmanaged<void*, void>, void*, void*, int>)Libc.Function("__cxa_atexit");
        if (cxaAtExit is null || cxaAtExit(&OnExit, null, null) != 0)
        {
            ShimLog.Always("could not register the exit handler; the lease ends by its TTL after the program exits");
        }
    }

    [UnmanagedCallersOnly]
    private static void OnExit(void* unused)
    {
        try
        {
            if (!s_forkedChild && s_driver is { _ownLease: { } lease } driver)
            {
                _ = driver.Session.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(2));
                _ = lease.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(5));
                driver._client.Dispose();
            }
        }
        catch (Exception ex)
        {
            ShimLog.Always($"releasing the lease at exit failed ({ex.Message}); it ends by its TTL");
        }
    }
}
