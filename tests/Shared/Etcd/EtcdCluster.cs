using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace GpuPool.Testing.Etcd;

/// <summary>
/// Real etcd processes for tests: one member or a cluster of several, on free loopback ports, each with a temp
/// data dir. <see cref="StartAsync"/> returns once every member reports healthy (a leader is elected); members can
/// be killed and restarted; dispose kills them all and deletes their data. Shared source: linked into each test
/// project that needs etcd (see tests/Shared/README.md).
/// </summary>
public sealed class EtcdCluster : IAsyncDisposable
{
    /// <summary>Where the binary is looked for first; otherwise <c>etcd</c> on PATH.</summary>
    public const string BinaryVariable = "GPUPOOL_ETCD";

    public const string InstallHint = "install it with 'apt-get install -y etcd-server' (./build.sh --target=Test does so when run as root), or set GPUPOOL_ETCD to the etcd binary";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    private readonly string _root;

    private EtcdCluster(string root, IReadOnlyList<EtcdNode> members)
    {
        _root = root;
        Members = members;
    }

    public IReadOnlyList<EtcdNode> Members { get; }

    /// <summary>The members' client URLs, comma-separated, as the etcd driver takes them.</summary>
    public string Endpoints => string.Join(",", Members.Select(m => m.ClientUrl));

    /// <summary>
    /// Starts <paramref name="size"/> members and waits until all are healthy. Raft timing is etcd's default
    /// (heartbeat 100 ms, election 1 s: leases of 2 s or more are honoured as asked); lower it to fail over faster.
    /// </summary>
    /// <param name="tls">Serve clients over TLS with these files (health is then read from a plaintext metrics URL).</param>
    /// <param name="extraArguments">More flags for every member (for example --auth-token-ttl).</param>
    public static async Task<EtcdCluster> StartAsync(
        int size = 1, int heartbeatMs = 100, int electionMs = 1000, CancellationToken cancellationToken = default, EtcdServerTls? tls = null, IReadOnlyList<string>? extraArguments = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        var binary = FindBinary();
        for (var attempt = 1; ; attempt++)
        {
            var root = Path.Combine(Path.GetTempPath(), $"gpupool-etcd-{Guid.NewGuid():N}");
            Directory.CreateDirectory(root);
            var token = Path.GetFileName(root);
            var nodes = Enumerable.Range(0, size).Select(i => new EtcdNode(binary, $"m{i}", Path.Combine(root, $"m{i}"), FreePort(), FreePort(), tls is null ? null : FreePort())).ToList();
            var initialCluster = string.Join(",", nodes.Select(n => $"{n.Name}={n.PeerUrl}"));
            foreach (var node in nodes)
            {
                node.Arguments =
                [
                    "--name", node.Name, "--data-dir", node.DataDir,
                    "--listen-client-urls", node.ClientUrl, "--advertise-client-urls", node.ClientUrl,
                    "--listen-peer-urls", node.PeerUrl, "--initial-advertise-peer-urls", node.PeerUrl,
                    "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", token,
                    "--heartbeat-interval", $"{heartbeatMs}", "--election-timeout", $"{electionMs}",
                    "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
                    .. tls is null ? [] : new[] { "--cert-file", tls.CertFile, "--key-file", tls.KeyFile, "--listen-metrics-urls", node.HealthUrl },
                    .. tls is { ClientCertAuth: true } ? new[] { "--client-cert-auth", "--trusted-ca-file", tls.CaFile } : [],
                    .. extraArguments ?? [],
                ];
            }

            var cluster = new EtcdCluster(root, nodes);
            try
            {
                foreach (var node in nodes)
                {
                    node.Start();
                }

                await cluster.WaitHealthyAsync(TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
                return cluster;
            }
            catch (Exception) when (attempt < 3 && nodes.Any(n => n.Output.Contains("address already in use", StringComparison.Ordinal)))
            {
                // Another process took a port between our probe and etcd's bind: try new ports.
                await cluster.DisposeAsync().ConfigureAwait(false);
            }
            catch
            {
                await cluster.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }

    /// <summary>The etcd binary, or an error that says how to install it.</summary>
    public static string FindBinary()
    {
        if (Environment.GetEnvironmentVariable(BinaryVariable) is { Length: > 0 } configured)
        {
            return File.Exists(configured) ? configured : throw new InvalidOperationException($"{BinaryVariable} names '{configured}', which does not exist; {InstallHint}");
        }

        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Append("/usr/bin"))
        {
            var candidate = Path.Combine(dir, "etcd");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException($"etcd is not installed: {InstallHint}");
    }

    /// <summary>Waits until every running member answers /health with a leader.</summary>
    public async Task WaitHealthyAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var deadline = DateTime.UtcNow + timeout;
        foreach (var node in Members.Where(n => n.IsRunning))
        {
            while (!await node.IsHealthyAsync(cancellationToken).ConfigureAwait(false))
            {
                if (node.HasExited)
                {
                    throw new InvalidOperationException($"etcd member {node.Name} exited with code {node.ExitCode}: {node.Output}");
                }

                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"etcd member {node.Name} at {node.ClientUrl} was not healthy after {timeout.TotalSeconds} s: {node.Output}");
                }

                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The index of the member that leads, as the running members report it; -1 while none does.</summary>
    public async Task<int> LeaderIndexAsync(CancellationToken cancellationToken = default)
    {
        if (Members[0].HealthUrl != Members[0].ClientUrl)
        {
            // A cluster serving clients over TLS: each member's plaintext metrics say whether it leads.
            for (var i = 0; i < Members.Count; i++)
            {
                if (Members[i].IsRunning && await Members[i].LeadsAsync(cancellationToken).ConfigureAwait(false))
                {
                    return i;
                }
            }

            return -1;
        }

        var ids = new Dictionary<string, int>();
        string? leader = null;
        for (var i = 0; i < Members.Count; i++)
        {
            if (!Members[i].IsRunning)
            {
                continue;
            }

            var status = await Members[i].StatusAsync(cancellationToken).ConfigureAwait(false);
            if (status is { } s)
            {
                ids[s.MemberId] = i;
                leader ??= s.LeaderId;
            }
        }

        return leader is not null && ids.TryGetValue(leader, out var index) ? index : -1;
    }

    /// <summary>Makes member <paramref name="to"/> the leader (etcd's MoveLeader, sent to the current leader), and waits until it is.</summary>
    public async Task TransferLeadershipAsync(int to, CancellationToken cancellationToken = default)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            var leader = await LeaderIndexAsync(cancellationToken).ConfigureAwait(false);
            if (leader == to)
            {
                return;
            }

            // Mid-election a member may name no leader (its status then reads as null): ask again.
            if (leader >= 0 && await Members[to].StatusAsync(cancellationToken).ConfigureAwait(false) is { } target)
            {
                using var body = new StringContent($"{{\"targetID\":\"{target.MemberId}\"}}", Encoding.UTF8, "application/json");
                try
                {
                    using var _ = await Http.PostAsync(Members[leader].ClientUrl + "/v3/maintenance/transfer-leadership", body, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    // The leader changed or went away under the request: look again.
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"etcd did not move its leadership to member {Members[to].Name}");
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Turns etcd's password authentication on as an operator would: a root user, and <paramref name="user"/> whose role
    /// reads and writes <paramref name="prefix"/> and nothing else. <paramref name="tls"/>: the client's TLS options
    /// for a cluster that serves clients over TLS.
    /// </summary>
    public async Task EnableAuthAsync(string user, string password, string prefix, Func<string, System.Net.Security.SslClientAuthenticationOptions>? tls = null)
    {
        var endpoint = Members.First(m => m.IsRunning).ClientUrl;
        var handler = new SocketsHttpHandler();
        if (tls is not null)
        {
            handler.SslOptions = tls(new Uri(endpoint).Host);
        }

        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(endpoint, new Grpc.Net.Client.GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        var auth = new Etcdserverpb.Auth.AuthClient(channel);
        await auth.RoleAddAsync(new Etcdserverpb.AuthRoleAddRequest { Name = "root" });
        await auth.UserAddAsync(new Etcdserverpb.AuthUserAddRequest { Name = "root", Password = Guid.NewGuid().ToString("N") });
        await auth.UserGrantRoleAsync(new Etcdserverpb.AuthUserGrantRoleRequest { User = "root", Role = "root" });
        var role = user + "-role";
        await auth.RoleAddAsync(new Etcdserverpb.AuthRoleAddRequest { Name = role });
        var key = Google.Protobuf.ByteString.CopyFromUtf8(prefix);
        var end = Google.Protobuf.ByteString.CopyFromUtf8(prefix[..^1] + (char)(prefix[^1] + 1));
        await auth.RoleGrantPermissionAsync(new Etcdserverpb.AuthRoleGrantPermissionRequest
        {
            Name = role,
            Perm = new Authpb.Permission { PermType = Authpb.Permission.Types.Type.Readwrite, Key = key, RangeEnd = end },
        });
        await auth.UserAddAsync(new Etcdserverpb.AuthUserAddRequest { Name = user, Password = password });
        await auth.UserGrantRoleAsync(new Etcdserverpb.AuthUserGrantRoleRequest { User = user, Role = role });
        await auth.AuthEnableAsync(new Etcdserverpb.AuthEnableRequest());
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Members)
        {
            node.Kill();
        }

        for (var i = 0; ; i++)
        {
            try
            {
                if (Directory.Exists(_root))
                {
                    Directory.Delete(_root, recursive: true);
                }

                return;
            }
            catch (IOException) when (i < 5)
            {
                await Task.Delay(100).ConfigureAwait(false);
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>One etcd member process.</summary>
    public sealed class EtcdNode
    {
        private static readonly List<Process> Live = [];
        private readonly string _binary;
        private readonly Queue<string> _output = new();
        private Process? _process;

        static EtcdNode()
        {
            // A test run that ends without disposing (a crash, a timeout) still takes its etcd processes with it.
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                lock (Live)
                {
                    foreach (var p in Live)
                    {
                        try
                        {
                            p.Kill();
                        }
                        catch (InvalidOperationException)
                        {
                        }
                    }
                }
            };
        }

        internal EtcdNode(string binary, string name, string dataDir, int clientPort, int peerPort, int? metricsPort)
        {
            _binary = binary;
            Name = name;
            DataDir = dataDir;
            ClientUrl = $"{(metricsPort is null ? "http" : "https")}://127.0.0.1:{clientPort}";
            PeerUrl = $"http://127.0.0.1:{peerPort}";
            HealthUrl = metricsPort is { } metrics ? $"http://127.0.0.1:{metrics}" : ClientUrl;
        }

        public string Name { get; }

        public string DataDir { get; }

        public string ClientUrl { get; }

        public string PeerUrl { get; }

        /// <summary>Where /health is read: the client URL, or with TLS a plaintext metrics URL of its own.</summary>
        public string HealthUrl { get; }

        internal string[] Arguments { get; set; } = [];

        public bool IsRunning => _process is { HasExited: false };

        internal bool HasExited => _process is { HasExited: true };

        internal int ExitCode => _process?.ExitCode ?? -1;

        /// <summary>The last lines etcd wrote, for error messages.</summary>
        public string Output
        {
            get
            {
                lock (_output)
                {
                    return string.Join("\n", _output);
                }
            }
        }

        /// <summary>Starts (or restarts, on the same data dir) this member.</summary>
        public void Start()
        {
            if (IsRunning)
            {
                return;
            }

            var info = new ProcessStartInfo(_binary)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var argument in Arguments)
            {
                info.ArgumentList.Add(argument);
            }

            // The environment must not configure etcd behind the flags' back.
            foreach (var variable in info.Environment.Keys.Where(k => k.StartsWith("ETCD", StringComparison.Ordinal)).ToList())
            {
                info.Environment.Remove(variable);
            }

            var process = new Process { StartInfo = info };
            process.OutputDataReceived += (_, e) => Remember(e.Data);
            process.ErrorDataReceived += (_, e) => Remember(e.Data);
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _process = process;
            lock (Live)
            {
                Live.Add(process);
            }
        }

        /// <summary>Kills the member at once (SIGKILL), as a crash would.</summary>
        public void Kill()
        {
            if (_process is not { } process)
            {
                return;
            }

            try
            {
                process.Kill();
                process.WaitForExit(10_000);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            lock (Live)
            {
                Live.Remove(process);
            }

            process.Dispose();
            _process = null;
        }

        /// <summary>Whether this member leads, from its metrics (etcd_server_is_leader); false when it does not answer.</summary>
        public async Task<bool> LeadsAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                var text = await Http.GetStringAsync(HealthUrl + "/metrics", cancellationToken).ConfigureAwait(false);
                return text.Split('\n').Any(l => l.Trim() == "etcd_server_is_leader 1");
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                return false;
            }
        }

        public async Task<bool> IsHealthyAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                using var response = await Http.GetAsync(HealthUrl + "/health", cancellationToken).ConfigureAwait(false);
                var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                return response.IsSuccessStatusCode && text.Contains("\"true\"", StringComparison.Ordinal);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                return false;
            }
        }

        /// <summary>This member's id and the leader's as it sees them (etcd's Maintenance.Status), or null when it does not answer.</summary>
        public async Task<(string MemberId, string LeaderId)?> StatusAsync(CancellationToken cancellationToken = default)
        {
            try
            {
                using var body = new StringContent("{}", Encoding.UTF8, "application/json");
                using var response = await Http.PostAsync(ClientUrl + "/v3/maintenance/status", body, cancellationToken).ConfigureAwait(false);
                using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
                var member = json.RootElement.GetProperty("header").GetProperty("member_id").GetString();
                var leader = json.RootElement.TryGetProperty("leader", out var l) ? l.GetString() : null;
                return member is null || leader is null ? null : (member, leader);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException && !cancellationToken.IsCancellationRequested)
            {
                return null;
            }
        }

        private void Remember(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (_output)
            {
                _output.Enqueue(line);
                while (_output.Count > 40)
                {
                    _output.Dequeue();
                }
            }
        }
    }
}

/// <summary>TLS for an etcd's client port: its certificate and key, and with <paramref name="ClientCertAuth"/> the CA clients' certificates must chain to.</summary>
public sealed record EtcdServerTls(string CertFile, string KeyFile, string CaFile, bool ClientCertAuth);
