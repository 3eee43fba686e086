using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Client;
using GpuPool.Coordination.Embedded;
using GpuPool.Devices.Cpu;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;
using Microsoft.Extensions.Logging;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// A pool with TLS on every port (or, for the comparisons, without): a scheduler and a broker with certificates of the
/// pool's CA, real Kestrel, the real fast path, on loopback.
/// </summary>
public sealed class TlsPool : IAsyncDisposable
{
    private readonly TestPki _pki = new();
    private readonly CpuBackend _backend = new(deviceCount: 1, memoryPerDevice: 1UL << 30);
    private readonly ECDsa _key = LeaseToken.CreateKey();
    private readonly BrokerLogRecorder _brokerLog = new(LogLevel.Warning);
    private readonly ILoggerFactory _brokerLoggerFactory;
    private EmbeddedClusterStore? _store;

    public TlsPool() => _brokerLoggerFactory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Warning).AddProvider(_brokerLog));

    public string AdminToken { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    internal TestPki Pki => _pki;

    public SchedulerHost Scheduler { get; private set; } = null!;

    public BrokerHost Broker { get; private set; } = null!;

    public GpuPoolClient Client { get; private set; } = null!;

    /// <summary>Warnings the broker and its Kestrel logged.</summary>
    public IReadOnlyCollection<LoggedEntry> BrokerWarnings => _brokerLog.Entries;

    public static async Task<TlsPool> StartAsync(bool tls = true, TimeSpan? idle = null)
    {
        var pool = new TlsPool();
        pool._store = new EmbeddedClusterStore();
        pool.Scheduler = await SchedulerHost.StartAsync(
            new SchedulerOptions
            {
                Port = 0,
                SigningKey = pool._key,
                OpenTenants = true,
                AdminToken = pool.AdminToken,
                Tls = tls ? pool._pki.Server("scheduler", PoolRole.Scheduler) : null,
                IdleConnectionTimeout = idle ?? TimeSpan.FromSeconds(30),
            },
            pool._store);
        pool.Broker = await BrokerHost.StartAsync(
            new BrokerOptions
            {
                BrokerId = "tls-broker",
                Port = 0,
                SchedulerPublicKey = LeaseToken.ImportPem(LeaseToken.ExportPublicPem(pool._key)),
                Backend = pool._backend,
                Tls = tls ? pool._pki.Server("tls-broker", PoolRole.Broker) : null,
                IdleConnectionTimeout = idle ?? TimeSpan.FromSeconds(30),
                FastPathHelloTimeout = idle ?? TimeSpan.FromSeconds(10),
                RegistrationTtl = TimeSpan.FromSeconds(10),
                HeartbeatInterval = TimeSpan.FromSeconds(1),
            },
            pool._store,
            pool._brokerLoggerFactory);
        pool.Client = new GpuPoolClient(pool.Scheduler.Endpoint, pool.ClientOptions());
        return pool;
    }

    /// <summary>A client's options: the pool's CA (or <paramref name="authority"/>) and the admin credential.</summary>
    public GpuPoolClientOptions ClientOptions(System.Security.Cryptography.X509Certificates.X509Certificate2? authority = null)
        => new() { Authority = authority ?? _pki.PublicAuthority, BearerToken = AdminToken };

    public Task<Lease> LeaseAsync(GpuPoolClient? client = null)
        => (client ?? Client).AllocateAsync(new LeaseRequest { Tenant = "tls", MemoryBytes = 256UL << 20, ComputeShare = 500, Ttl = TimeSpan.FromSeconds(30) });

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        if (Broker is not null)
        {
            await Broker.DisposeAsync();
        }

        if (Scheduler is not null)
        {
            await Scheduler.DisposeAsync();
        }

        if (_store is not null)
        {
            await _store.DisposeAsync();
        }

        _backend.Dispose();
        _key.Dispose();
        _brokerLoggerFactory.Dispose();
        _pki.Dispose();
    }
}

/// <summary>TLS on every port: sessions work over it, the wrong peers are refused with a sentence, and the wire shows nothing.</summary>
public sealed class TlsTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(SessionTransportKind.Tcp)]
    [InlineData(SessionTransportKind.Grpc)]
    public async Task A_session_over_TLS_copies_every_byte_both_ways_striped_or_not(SessionTransportKind kind)
    {
        await using var pool = await TlsPool.StartAsync();
        Assert.StartsWith("https://", pool.Scheduler.Endpoint, StringComparison.Ordinal);
        Assert.StartsWith("https://", pool.Broker.Endpoint, StringComparison.Ordinal);
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(new SessionOptions { Transport = kind, Stripes = 3 });
        Assert.Equal(kind == SessionTransportKind.Tcp ? "tcp" : "grpc", session.Transport);

        foreach (var size in new[] { 1000, 24 << 20 })
        {
            var data = RandomNumberGenerator.GetBytes(size);
            var ptr = await session.AllocAsync((ulong)size);
            await session.CopyToDeviceAsync(ptr, data).AsTask().WaitAsync(Bound);
            var back = new byte[size];
            await session.CopyToHostAsync(ptr, back).AsTask().WaitAsync(Bound);
            Assert.True(data.AsSpan().SequenceEqual(back), $"{size} bytes came back different");
        }

        if (kind == SessionTransportKind.Tcp)
        {
            Assert.Equal(2, session.DataConnections);
        }
    }

    [Fact]
    public async Task A_client_that_trusts_another_CA_is_refused_by_the_scheduler_and_the_broker_naming_the_pool_CA()
    {
        await using var pool = await TlsPool.StartAsync();
        using var otherPki = new TestPki();
        using var stranger = new GpuPoolClient(pool.Scheduler.Endpoint, pool.ClientOptions(otherPki.PublicAuthority));

        var allocate = await Assert.ThrowsAsync<GpuPoolException>(() => pool.LeaseAsync(stranger));
        Assert.Equal(ErrorCode.Unavailable, allocate.Code);
        Assert.Contains("is not issued by this pool's CA", allocate.Message, StringComparison.Ordinal);

        // A lease it was handed: the broker's fast path is refused, and so is its gRPC, each saying why.
        await using var lease = await pool.LeaseAsync();
        var fast = await Assert.ThrowsAsync<GpuPoolException>(() => stranger.OpenSessionAsync(lease.Record, lease.Token, SessionTransportKind.Tcp));
        Assert.Contains($"cannot reach broker tls-broker's fast path at tcp {pool.Broker.FastPath.Tcp}: TLS refused: the certificate of broker tls-broker", fast.Message, StringComparison.Ordinal);
        Assert.Contains("is not issued by this pool's CA", fast.Message, StringComparison.Ordinal);

        // Nothing else disturbed: the lease's own holder still opens a session.
        await using var session = await lease.OpenSessionAsync(SessionTransportKind.Tcp);
        Assert.NotEqual(0UL, (await session.AllocAsync(4096)).Address);
    }

    [Fact]
    public async Task A_tenant_certificate_proves_its_tenant_at_the_TLS_scheduler_and_one_of_another_CA_is_refused_naming_why()
    {
        await using var pool = await TlsPool.StartAsync();
        var asTeamA = new GpuPoolClientOptions { Authority = pool.Pki.PublicAuthority, Certificate = pool.Pki.Issue("team-a", PoolRole.Tenant) };
        using (var teamA = new GpuPoolClient(pool.Scheduler.Endpoint, asTeamA))
        {
            await using var own = await teamA.AllocateAsync(new LeaseRequest { MemoryBytes = 16 << 20, ComputeShare = 100 });
            Assert.Equal("team-a", own.Record.Tenant);
            var other = await Assert.ThrowsAsync<GpuPoolException>(() => teamA.AllocateAsync(new LeaseRequest { Tenant = "team-b", MemoryBytes = 16 << 20, ComputeShare = 100 }));
            Assert.Equal(ErrorCode.PermissionDenied, other.Code);
            Assert.Contains("tenant team-a's credential cannot allocate for tenant team-b", other.Message, StringComparison.Ordinal);
        }

        using var otherPki = new TestPki();
        using var stranger = new GpuPoolClient(pool.Scheduler.Endpoint, new GpuPoolClientOptions { Authority = pool.Pki.PublicAuthority, Certificate = otherPki.Issue("team-a", PoolRole.Admin) });
        var refused = await Assert.ThrowsAsync<GpuPoolException>(() => stranger.AllocateAsync(new LeaseRequest { Tenant = "team-a", MemoryBytes = 16 << 20, ComputeShare = 100 }));
        Assert.Equal(ErrorCode.Unauthenticated, refused.Code);
        Assert.Contains("is not issued by this pool's CA", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_plaintext_client_at_the_TLS_fast_path_is_told_it_speaks_TLS_and_the_broker_logs_the_peer()
    {
        await using var pool = await TlsPool.StartAsync();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPEndPoint.Parse(pool.Broker.FastPath.Tcp));
        var local = socket.LocalEndPoint!.ToString()!;
        await socket.SendAsync(Encoding.ASCII.GetBytes("GPUP plaintext hello, not a TLS record"), SocketFlags.None);

        var answer = new MemoryStream();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(Bound);
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
        {
            answer.Write(buffer, 0, n);
        }

        Assert.Contains("this broker's fast path speaks TLS: connect with TLS and the pool's CA", Encoding.UTF8.GetString(answer.ToArray()), StringComparison.Ordinal);
        await Poll.UntilAsync(() => pool.BrokerWarnings.Any(e => e.Message.Contains($"Fast-path connection from {local} refused: it sent plaintext to a TLS port", StringComparison.Ordinal)), Bound, "the broker logs the refused peer");
    }

    [Fact]
    public async Task A_plaintext_client_at_a_TLS_scheduler_and_a_TLS_client_at_a_plaintext_one_each_get_a_sentence_on_TLS()
    {
        await using var secure = await TlsPool.StartAsync();
        var plainUrl = "http://" + secure.Scheduler.Endpoint["https://".Length..];
        using (var plaintext = new GpuPoolClient(plainUrl, new GpuPoolClientOptions { BearerToken = secure.AdminToken }))
        {
            var error = await Assert.ThrowsAsync<GpuPoolException>(() => secure.LeaseAsync(plaintext));
            Assert.Equal(ErrorCode.Unavailable, error.Code);
            Assert.Contains("if the server speaks TLS, as a pool does unless run with --insecure, dial it at https:// with the pool's CA", error.Message, StringComparison.Ordinal);
        }

        await using var insecure = await TlsPool.StartAsync(tls: false);
        Assert.StartsWith("http://", insecure.Scheduler.Endpoint, StringComparison.Ordinal);
        using var tlsClient = new GpuPoolClient("https://" + insecure.Scheduler.Endpoint["http://".Length..], insecure.ClientOptions());
        var refused = await Assert.ThrowsAsync<GpuPoolException>(() => insecure.LeaseAsync(tlsClient));
        Assert.Equal(ErrorCode.Unavailable, refused.Code);
        Assert.Contains("a server run with --insecure speaks plaintext: dial it at http://", refused.Message, StringComparison.Ordinal);

        // Both pools serve their own clients afterwards.
        await using var a = await secure.LeaseAsync();
        await using var b = await insecure.LeaseAsync();
    }

    /// <summary>
    /// A relay on the wire between the client and each port records every byte: with TLS it finds neither the admin
    /// credential, nor the lease token, nor any 64 bytes of the tensor copied both ways; the same relay in front of a
    /// pool run with --insecure finds all three (so the search can fail).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task The_bytes_on_the_wire_show_no_credential_token_or_tensor_only_with_TLS(bool tls)
    {
        await using var pool = await TlsPool.StartAsync(tls);
        var scheme = tls ? "https" : "http";
        await using var schedulerRelay = new RecordingRelay(new Uri(pool.Scheduler.Endpoint).Port);
        await using var brokerRelay = new RecordingRelay(new Uri(pool.Broker.Endpoint).Port);
        await using var fastRelay = new RecordingRelay(IPEndPoint.Parse(pool.Broker.FastPath.Tcp).Port);
        using var client = new GpuPoolClient($"{scheme}://127.0.0.1:{schedulerRelay.Port}", pool.ClientOptions());

        var tensor = RandomNumberGenerator.GetBytes(1 << 20);
        await using var lease = await pool.LeaseAsync(client);
        var record = lease.Record.Clone();
        record.BrokerEndpoint = $"{scheme}://127.0.0.1:{brokerRelay.Port}";
        record.BrokerFastPathTcp = $"127.0.0.1:{fastRelay.Port}";
        record.BrokerFastPathUnix = "";
        foreach (var kind in new[] { SessionTransportKind.Tcp, SessionTransportKind.Grpc })
        {
            await using var session = await client.OpenSessionAsync(record, lease.Token, kind);
            var ptr = await session.AllocAsync((ulong)tensor.Length);
            await session.CopyToDeviceAsync(ptr, tensor).AsTask().WaitAsync(Bound);
            var back = new byte[tensor.Length];
            await session.CopyToHostAsync(ptr, back).AsTask().WaitAsync(Bound);
            Assert.True(tensor.AsSpan().SequenceEqual(back));
        }

        var wire = new[] { schedulerRelay.Recorded, brokerRelay.Recorded, fastRelay.Recorded };
        Assert.All(wire, w => Assert.True(w.Length > 0, "the relay carried nothing: the client did not go through it"));
        var admin = Encoding.ASCII.GetBytes(pool.AdminToken);
        var token = Encoding.ASCII.GetBytes(lease.Token[..40]);
        var pieces = Enumerable.Range(0, 16).Select(i => tensor.AsSpan(i * (tensor.Length / 16), 64).ToArray()).ToArray();
        var found = new
        {
            Admin = wire.Any(w => w.AsSpan().IndexOf(admin) >= 0),
            Token = wire.Any(w => w.AsSpan().IndexOf(token) >= 0),
            Tensor = pieces.Count(p => wire.Any(w => w.AsSpan().IndexOf(p) >= 0)),
        };
        if (tls)
        {
            Assert.Equal(new { Admin = false, Token = false, Tensor = 0 }, found);
        }
        else
        {
            Assert.True(found.Admin && found.Token && found.Tensor == pieces.Length, $"the plaintext wire should show all three: {found}");
        }
    }

    [Fact]
    public async Task Two_hundred_idle_connections_at_each_port_are_closed_after_the_deadline_and_a_good_client_is_served()
    {
        var idle = TimeSpan.FromSeconds(2);
        await using var pool = await TlsPool.StartAsync(idle: idle);
        var ports = new[]
        {
            new Uri(pool.Scheduler.Endpoint).Port,
            new Uri(pool.Broker.Endpoint).Port,
            IPEndPoint.Parse(pool.Broker.FastPath.Tcp).Port,
        };
        var sockets = new List<Socket>();
        try
        {
            foreach (var port in ports)
            {
                for (var i = 0; i < 200; i++)
                {
                    var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    await socket.ConnectAsync(IPAddress.Loopback, port);
                    sockets.Add(socket);
                }
            }

            // Each is closed by the server: a receive sees the end (or a reset), none waits past the deadline and some slack.
            var started = System.Diagnostics.Stopwatch.StartNew();
            var closed = await Task.WhenAll(sockets.Select(async s =>
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                try
                {
                    return await s.ReceiveAsync(new byte[16], SocketFlags.None, timeout.Token) == 0;
                }
                catch (SocketException)
                {
                    return true;
                }
                catch (OperationCanceledException)
                {
                    return false;
                }
            }));
            Assert.Equal(sockets.Count, closed.Count(c => c));
            Assert.True(started.Elapsed > idle / 2, $"the connections were closed after {started.Elapsed}, before the {idle} deadline");
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }

        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(SessionTransportKind.Tcp);
        Assert.NotEqual(0UL, (await session.AllocAsync(4096)).Address);
    }
}
