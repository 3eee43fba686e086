using System.Diagnostics;
using System.Text;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// The built CLI (gpupool.dll, copied next to this assembly) run as a real child process with its own
/// GPUPOOL_CONFIG_DIR. Output is collected line by line; disposing kills the process if it still runs.
/// </summary>
internal sealed class CliProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource _stdoutClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stderrClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _disposed;

    private CliProcess(string configDir, IEnumerable<string> args, IReadOnlyDictionary<string, string?>? environment = null, string? workingDirectory = null, string? networkNamespace = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "gpupool.dll");
        Assert.True(File.Exists(dll), $"the CLI is not built next to the tests: {dll} is missing");

        // env resets SIGINT to its default: a test host started in the background (SIGINT ignored) would
        // otherwise pass the ignore on, and `kill -INT` could not stop `gpupool up`. In a network namespace,
        // `ip netns exec` enters it and execs env, so the process is still one process.
        var start = new ProcessStartInfo(networkNamespace is null ? "env" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        if (networkNamespace is not null)
        {
            foreach (var arg in new[] { "netns", "exec", networkNamespace, "env" })
            {
                start.ArgumentList.Add(arg);
            }
        }

        start.ArgumentList.Add("--default-signal=INT");
        start.ArgumentList.Add(DotnetHost());
        start.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["GPUPOOL_CONFIG_DIR"] = configDir;
        start.Environment.Remove("GPUPOOL_SCHEDULER");
        start.Environment.Remove("GPUPOOL_TOKEN");
        start.Environment.Remove("GPUPOOL_TENANT_TOKEN");
        start.Environment.Remove("GPUPOOL_ADMIN_TOKEN");
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                start.Environment.Remove(name);
            }
            else
            {
                start.Environment[name] = value;
            }
        }

        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => Collect(_stdout, e.Data, _stdoutClosed);
        _process.ErrorDataReceived += (_, e) => Collect(_stderr, e.Data, _stderrClosed);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Id => _process.Id;

    public string Stdout
    {
        get
        {
            lock (_stdout)
            {
                return _stdout.ToString();
            }
        }
    }

    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>True once the process has ended (or been killed by <see cref="DisposeAsync"/>).</summary>
    public bool HasExited => _disposed || _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public static CliProcess Start(string configDir, params string[] args) => new(configDir, args);

    /// <summary>Starts the CLI with environment variables set (a null value removes one).</summary>
    public static CliProcess Start(string configDir, IReadOnlyDictionary<string, string?> environment, params string[] args) => new(configDir, args, environment);

    /// <summary>Starts the CLI in <paramref name="workingDirectory"/>, with environment variables set (a null value removes one).</summary>
    public static CliProcess StartIn(string workingDirectory, string configDir, IReadOnlyDictionary<string, string?> environment, params string[] args)
        => new(configDir, args, environment, workingDirectory);

    /// <summary>Starts the CLI inside network namespace <paramref name="networkNamespace"/> (as root, through <c>ip netns exec</c>).</summary>
    public static CliProcess StartInNamespace(string networkNamespace, string configDir, params string[] args)
        => new(configDir, args, networkNamespace: networkNamespace);

    /// <summary>Starts the CLI inside a network namespace, in <paramref name="workingDirectory"/>, with environment variables set.</summary>
    public static CliProcess StartInNamespace(string networkNamespace, string configDir, IReadOnlyDictionary<string, string?> environment, string workingDirectory, params string[] args)
        => new(configDir, args, environment, workingDirectory, networkNamespace);

    /// <summary>Runs a command to completion; fails the test if it takes longer than <paramref name="timeout"/>.</summary>
    public static async Task<CliProcess> RunAsync(string configDir, TimeSpan timeout, params string[] args)
    {
        var cli = new CliProcess(configDir, args);
        if (!await cli.WaitForExitAsync(timeout))
        {
            await cli.DisposeAsync();
            Assert.Fail($"gpupool {string.Join(' ', args)} did not exit within {timeout.TotalSeconds:0} s");
        }

        return cli;
    }

    /// <summary>Waits until the process has exited and its output has been read.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            await Task.WhenAll(_stdoutClosed.Task, _stderrClosed.Task).WaitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Polls the output until a line satisfies <paramref name="predicate"/>; fails the test at the deadline or if the process exits first.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> predicate, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var line = Stdout.Split('\n').FirstOrDefault(predicate);
            if (line is not null)
            {
                return line;
            }

            if (_process.HasExited || DateTime.UtcNow > deadline)
            {
                Assert.Fail($"no expected line from gpupool within {timeout.TotalSeconds:0} s (exited: {_process.HasExited}); stdout:\n{Stdout}\nstderr:\n{Stderr}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Sends SIGINT, as Ctrl-C in a terminal would.</summary>
    public async Task InterruptAsync()
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-INT", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) }, UseShellExecute = false })!;
        await kill.WaitForExitAsync();
        Assert.Equal(0, kill.ExitCode);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
            // It exited between the check and the kill.
        }

        _process.Dispose();
    }

    private static void Collect(StringBuilder sink, string? line, TaskCompletionSource closed)
    {
        if (line is null)
        {
            closed.TrySetResult();
            return;
        }

        lock (sink)
        {
            sink.Append(line).Append('\n');
        }
    }

    /// <summary>The dotnet host running these tests, else the one on PATH.</summary>
    private static string DotnetHost()
    {
        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }

        return Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
    }
}
