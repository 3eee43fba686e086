using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using GpuPool.Coordination.Consul;

namespace GpuPool.Coordination.Tests.Consul;

/// <summary>
/// A real Consul for the Consul tests: the agent at <c>GPUPOOL_CONSUL_ADDR</c> when it is set, else a
/// <c>consul agent -dev</c> started on free loopback ports from the <c>consul</c> on PATH, and stopped when the
/// tests end. With neither, <see cref="SkipReason"/> says so and every Consul test shows as skipped.
/// </summary>
public sealed class ConsulAgentFixture : IAsyncLifetime
{
    /// <summary>Why the Consul tests cannot run here, or null when they can.</summary>
    public static string? SkipReason { get; } = FindConsul() is null && string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(ConsulStoreOptions.AddressVariable))
        ? $"no consul binary on PATH and {ConsulStoreOptions.AddressVariable} unset"
        : null;

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly StringBuilder _output = new();
    private Process? _agent;

    /// <summary>The agent the tests use; null when skipped, or when it comes from the environment.</summary>
    public Uri? Address { get; private set; }

    /// <summary>Options for a store on this agent (the token, if any, comes from <c>GPUPOOL_CONSUL_TOKEN</c>).</summary>
    public ConsulStoreOptions Options() =>
        SkipReason is null ? new ConsulStoreOptions { Address = Address, RequestTimeout = TimeSpan.FromSeconds(15) } : throw new InvalidOperationException(SkipReason);

    public async Task InitializeAsync()
    {
        if (SkipReason is not null || !string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(ConsulStoreOptions.AddressVariable)))
        {
            return;
        }

        // Consul before 1.14 has no grpc_tls port and refuses the setting: then start without it.
        try
        {
            await StartDevAgentAsync(disableGrpcTls: true);
        }
        catch (InvalidOperationException) when (Output().Contains("grpc_tls", StringComparison.Ordinal))
        {
            await StopAsync();
            await StartDevAgentAsync(disableGrpcTls: false);
        }
    }

    public Task DisposeAsync() => StopAsync();

    private async Task StartDevAgentAsync(bool disableGrpcTls)
    {
        var consul = FindConsul() ?? throw new InvalidOperationException("consul is not on PATH");
        var ports = FreePorts(4);
        var node = $"gpupool-test-{Environment.ProcessId}";
        var start = new ProcessStartInfo(consul)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string[] args =
        [
            "agent", "-dev", "-node", node, "-bind", "127.0.0.1", "-client", "127.0.0.1",
            "-http-port", $"{ports[0]}", "-server-port", $"{ports[1]}", "-serf-lan-port", $"{ports[2]}", "-serf-wan-port", $"{ports[3]}",
            "-dns-port", "-1", "-grpc-port", "-1", "-log-level", "warn",
        ];
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        if (disableGrpcTls)
        {
            start.ArgumentList.Add("-hcl");
            start.ArgumentList.Add("ports { grpc_tls = -1 }");
        }

        _agent = Process.Start(start) ?? throw new InvalidOperationException($"could not start {consul}");
        _agent.OutputDataReceived += (_, e) => Append(e.Data);
        _agent.ErrorDataReceived += (_, e) => Append(e.Data);
        _agent.BeginOutputReadLine();
        _agent.BeginErrorReadLine();

        var address = new Uri($"http://127.0.0.1:{ports[0]}");
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + StartTimeout;
        while (true)
        {
            if (_agent.HasExited)
            {
                throw new InvalidOperationException($"consul agent -dev exited with {_agent.ExitCode}: {Output()}");
            }

            // Ready when there is a leader and the agent's node is in the catalog with a passing serf check:
            // sessions are bound to that node and its check.
            if (await AnswersAsync(http, "/v1/status/leader", body => body.Trim() is { Length: > 2 } leader && leader.StartsWith('"'))
                && await AnswersAsync(http, $"/v1/health/node/{node}", body => body.Contains("serfHealth", StringComparison.Ordinal) && body.Contains("passing", StringComparison.Ordinal)))
            {
                Address = address;
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"consul agent -dev was not ready within {StartTimeout.TotalSeconds} s: {Output()}");
            }

            await Task.Delay(100);
        }
    }

    private async Task StopAsync()
    {
        if (_agent is null)
        {
            return;
        }

        try
        {
            if (!_agent.HasExited)
            {
                _agent.Kill(entireProcessTree: true);
            }

            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _agent.WaitForExitAsync(wait.Token);
        }
        catch (Exception ex) when (ex is InvalidOperationException or OperationCanceledException)
        {
        }
        finally
        {
            _agent.Dispose();
            _agent = null;
        }
    }

    private static async Task<bool> AnswersAsync(HttpClient http, string path, Func<string, bool> ready)
    {
        try
        {
            using var response = await http.GetAsync(path);
            return response.StatusCode == HttpStatusCode.OK && ready(await response.Content.ReadAsStringAsync());
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            if (_output.Length < 16_000)
            {
                _output.AppendLine(line);
            }
        }
    }

    private string Output()
    {
        lock (_output)
        {
            return _output.ToString();
        }
    }

    private static string? FindConsul()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, OperatingSystem.IsWindows() ? "consul.exe" : "consul");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Distinct free loopback ports (held open together while picked, so they differ).</summary>
    private static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToArray();
        try
        {
            foreach (var listener in listeners)
            {
                listener.Start();
            }

            return [.. listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var listener in listeners)
            {
                listener.Stop();
            }
        }
    }
}

/// <summary>A test that needs a real Consul: skipped, with the reason, when <see cref="ConsulAgentFixture.SkipReason"/> says there is none.</summary>
public sealed class ConsulFactAttribute : FactAttribute
{
    public ConsulFactAttribute()
    {
        if (ConsulAgentFixture.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}
