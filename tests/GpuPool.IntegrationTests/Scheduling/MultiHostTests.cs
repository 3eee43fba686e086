using System.Collections.Concurrent;
using System.Security.Cryptography;
using GpuPool.Client;
using GpuPool.Client.Admin;
using GpuPool.Coordination;
using GpuPool.Coordination.Etcd;
using GpuPool.IntegrationTests.Cli;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Testing.Etcd;
using Xunit.Abstractions;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// A pool of many hosts, all real processes on loopback: a three-member etcd cluster, two scheduler replicas
/// and three brokers (`gpupool scheduler`, `gpupool broker`, cpu backend). Several tenants allocate and
/// release concurrently while the leader, a broker (in the middle of a copy to it) and an etcd member are killed; the store is checked all
/// along for over-committed devices and broken quotas. Everything is secured as a shared pool should be: TLS on
/// every daemon's ports, tenants allocating as themselves with client certificates of the pool's CA, and etcd serving over TLS, asking for client certificates of the pool's CA, with its
/// password authentication on and the daemons' user allowed the pool's key prefix only.
/// </summary>
public sealed class MultiHostTests(ITestOutputHelper output)
{
    private const ulong MiB = 1UL << 20;
    private const int DevicesPerBroker = 2;
    private const ulong DeviceMemory = 1UL << 30;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private static readonly string[] Tenants = ["t0", "t1", "t2"];

    [Fact]
    public async Task Under_concurrent_allocations_killing_the_leader_a_broker_and_an_etcd_member_loses_nothing_silently()
    {
        var dir = Directory.CreateTempSubdirectory("gpupool-multihost-").FullName;
        var processes = new List<CliProcess>();
        using var pki = new TestPki();
        var etcdCert = pki.WriteFiles("etcd", PoolRole.Store, "127.0.0.1");
        await using var etcd = await EtcdCluster.StartAsync(size: 3, tls: new EtcdServerTls(etcdCert, Path.ChangeExtension(etcdCert, ".key"), pki.CaPath, ClientCertAuth: true));
        var checkerTls = new PoolTls(pki.PublicAuthority, pki.Issue("checker", PoolRole.Admin));
        const string storeUser = "gpupool", storePassword = "multi-host-secret", prefix = "pool/";
        await etcd.EnableAuthAsync(storeUser, storePassword, prefix, checkerTls.ClientOptions);
        var passwordFile = Path.Combine(dir, "store-password");
        await File.WriteAllTextAsync(passwordFile, storePassword + "\n");
        var storeSpec = "etcds://" + string.Join(",", etcd.Members.Select(m => new Uri(m.ClientUrl).Authority)) + "?prefix=" + prefix;
        string[] storeArgs = ["--store", storeSpec, "--store-user", storeUser, "--store-password-file", passwordFile];
        await using var store = new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints(etcd.Endpoints, prefix) with
        {
            Tls = checkerTls.ClientOptions,
            User = storeUser,
            Password = storePassword,
        });
        try
        {
            var keyPath = Path.Combine(dir, "scheduler-key.pem");
            LeaseToken.LoadOrCreatePrivateKey(keyPath).Dispose();
            var tokenPath = Path.Combine(dir, "admin-token");
            var adminToken = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
            await File.WriteAllTextAsync(tokenPath, adminToken);

            Note("etcd cluster up, over TLS with users");

            // The five processes start side by side (each waits on its own start-up, not on the others').
            var startingSchedulers = Enumerable.Range(0, 2)
                .Select(_ => StartAsync(dir, "scheduler", ["scheduler", .. storeArgs, "--port", "0", "--key", keyPath, "--admin-token-file", tokenPath, "--lease-ttl", "3s", "--preemption-grace", "2s", "--verbose", .. pki.DaemonArgs("scheduler", PoolRole.Scheduler, "127.0.0.1")]))
                .ToArray();
            var startingBrokers = Enumerable.Range(0, 3)
                .Select(i => StartAsync(dir, "broker", ["broker", .. storeArgs, "--id", $"b{i}", "--port", "0", "--fast-path-port", "-1", "--scheduler-key", keyPath, "--backend", "cpu", "--devices", $"{DevicesPerBroker}", "--device-memory", "1GiB", "--heartbeat-ttl", "3s", .. pki.DaemonArgs($"b{i}", PoolRole.Broker, "127.0.0.1")]))
                .ToArray();
            try
            {
                await Task.WhenAll(startingSchedulers.Concat(startingBrokers));
            }
            finally
            {
                processes.AddRange(startingSchedulers.Concat(startingBrokers).Where(t => t.IsCompletedSuccessfully).Select(t => t.Result.Process));
            }

            var schedulers = startingSchedulers.ToDictionary(t => t.Result.Endpoint, t => t.Result.Process, StringComparer.Ordinal);
            var brokers = startingBrokers.Select((t, i) => (Id: $"b{i}", t.Result.Process)).ToDictionary(b => b.Id, b => b.Process, StringComparer.Ordinal);
            Note("schedulers and brokers up");

            using var client = new GpuPoolClient(string.Join(",", schedulers.Keys), pki.Client(bearerToken: adminToken));
            var admin = new PoolAdmin(client, adminToken);
            await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Devices.Count == 3 * DevicesPerBroker, StartTimeout, "the leader sees every broker's devices");
            var quotas = new Dictionary<string, Quota>(StringComparer.Ordinal)
            {
                ["sentinel"] = new Quota { Tenant = "sentinel", MaxMilliGpus = 600, MaxMemoryBytes = 6 * 800 * MiB, MaxLeases = 6 },
            };
            foreach (var tenant in Tenants)
            {
                quotas[tenant] = new Quota { Tenant = tenant, MaxMilliGpus = 800, MaxMemoryBytes = 640 * MiB, MaxLeases = 5 };
            }

            foreach (var quota in quotas.Values)
            {
                await admin.SetQuotaAsync(quota);
            }

            // One long-held sentinel per device (800 MiB leaves no room for a second): they must live through
            // everything but the death of their own broker, and then their holders must be told.
            var sentinels = new List<Lease>();
            await Poll.UntilAsync(async () => (await admin.ListQuotasAsync()).Count == quotas.Count, TimeSpan.FromSeconds(10), "the quotas are stored");
            for (var i = 0; i < 3 * DevicesPerBroker; i++)
            {
                sentinels.Add(await client.AllocateAsync(new LeaseRequest { Tenant = "sentinel", MemoryBytes = 800 * MiB, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(3), WaitTimeout = TimeSpan.FromSeconds(10) }));
            }

            Assert.Equal(3 * DevicesPerBroker, sentinels.Select(s => (s.Record.BrokerId, s.Record.DeviceIndex)).Distinct().Count());
            Note("sentinels granted; the workload starts");

            // The tenants allocate as themselves, each with a client certificate of the pool's CA naming it.
            var tenantClients = Tenants.ToDictionary(t => t, t => new GpuPoolClient(string.Join(",", schedulers.Keys), pki.Client(t, PoolRole.Tenant)), StringComparer.Ordinal);
            using var disposeTenantClients = new CompositeDisposable(tenantClients.Values);
            var checker = new InvariantChecker(store, quotas);
            using var stop = new CancellationTokenSource();
            var stats = new WorkloadStats();
            var workers = Enumerable.Range(0, 12).Select(w => Task.Run(() => WorkAsync(tenantClients, store, w, stats, stop.Token))).ToArray();
            var checking = Task.Run(() => checker.RunAsync(stop.Token));

            async Task StepAsync(string what)
            {
                await checker.CheckAsync();
                Note($"{what}: {stats}");
            }

            // Each step waits for the workload to show what it must (never a fixed time): the pool still grants.
            async Task GrantsGoOnAsync(string what)
            {
                var before = Interlocked.Read(ref stats.Granted);
                await Poll.UntilAsync(() => Interlocked.Read(ref stats.Granted) >= before + 10, TimeSpan.FromSeconds(30), what);
            }

            // Until the workload has met a tenant's quota, so that the quota checks check something.
            await Poll.UntilAsync(
                () => stats.Refused.GetValueOrDefault(ErrorCode.QuotaExceeded) > 0 && Interlocked.Read(ref stats.Granted) >= 30,
                TimeSpan.FromSeconds(60),
                "the workload meets a tenant's quota");
            await StepAsync("steady");
            using (var listing = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                // The leader answers while it works: its loop is alive.
                Assert.NotEmpty((await client.ListClusterAsync(listing.Token)).Devices);
            }

            // 1. The leader dies: the standby takes over and allocations go on.
            var leader = (await client.ListClusterAsync()).Leader;
            Assert.True(schedulers.ContainsKey(leader), $"the leader '{leader}' is none of the replicas");
            await schedulers[leader].DisposeAsync();
            var survivor = schedulers.Keys.Single(e => e != leader);
            await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Leader == survivor, TimeSpan.FromSeconds(30), "the standby leads");
            await GrantsGoOnAsync("the new leader grants");
            await StepAsync("leader killed");

            // 2. A broker is killed in the middle of a copy: the copy fails at once naming the broker (it does not hang),
            // its sentinels' holders are told, the others' are not.
            var onB0 = sentinels.Where(s => s.Record.BrokerId == "b0").ToArray();
            await using var midCopy = await onB0[0].OpenSessionAsync(SessionTransportKind.Grpc);
            var bytes = new byte[64 << 20];
            var target = await midCopy.AllocAsync((ulong)bytes.Length);
            var copiesDone = 0;
            var copying = Task.Run(async () =>
            {
                while (true)
                {
                    await midCopy.CopyToDeviceAsync(target, bytes);
                    Interlocked.Increment(ref copiesDone);
                }
            });
            await Poll.UntilAsync(() => Volatile.Read(ref copiesDone) >= 1 || copying.IsCompleted, TimeSpan.FromSeconds(30), "copies to b0 are under way");
            await brokers["b0"].DisposeAsync();
            var cut = await Assert.ThrowsAsync<GpuPoolException>(() => copying.WaitAsync(TimeSpan.FromSeconds(30)));
            Note($"the copy under way when b0 was killed: {cut.Code}: {cut.Message}");
            Assert.Equal(ErrorCode.Unavailable, cut.Code);
            Assert.Contains("broker b0", cut.Message, StringComparison.Ordinal);
            await Poll.UntilAsync(() => onB0.All(s => s.Lost.IsCancellationRequested), TimeSpan.FromSeconds(30), "the holders of b0's sentinels are told");
            Assert.All(onB0, s => Assert.Contains("its broker b0 stopped heartbeating", s.LostReason!.Message, StringComparison.Ordinal));
            await StepAsync("broker b0 killed");

            // 3. An etcd member that does not lead dies: the store keeps a quorum and everything goes on.
            var etcdLeader = await etcd.LeaderIndexAsync();
            Assert.InRange(etcdLeader, 0, 2);
            etcd.Members[(etcdLeader + 1) % 3].Kill();
            await GrantsGoOnAsync("allocations go on with an etcd member down");
            await StepAsync("an etcd member killed");

            // Until the workload has found the pool full (likelier since b0's devices went), so that the capacity checks check something.
            await Poll.UntilAsync(() => stats.Refused.GetValueOrDefault(ErrorCode.ResourceExhausted) > 0, TimeSpan.FromSeconds(60), "the workload finds the pool full");

            await stop.CancelAsync();
            await Task.WhenAll(workers);
            await checking;
            await StepAsync("done");
            foreach (var unexpected in stats.Unexpected.Take(10))
            {
                output.WriteLine("unexpected: " + unexpected);
            }

            Assert.Empty(checker.Violations);
            Assert.Empty(stats.Unexpected);
            Assert.Empty(stats.LostUntold);
            Assert.All(sentinels.Where(s => s.Record.BrokerId != "b0"), s => Assert.False(s.Lost.IsCancellationRequested, $"sentinel {s.Id} on {s.Record.BrokerId} was lost: {s.LostReason?.Message}"));
            foreach (var sentinel in sentinels)
            {
                await sentinel.DisposeAsync();
            }
        }
        finally
        {
            foreach (var process in processes)
            {
                // What the schedulers logged (leases granted and lost, errors): kept in the test's output.
                var log = process.Stdout + process.Stderr;
                if (log.Contains("fail:", StringComparison.Ordinal) || log.Contains("crit:", StringComparison.Ordinal))
                {
                    output.WriteLine(string.Join('\n', log.Split('\n').Where(l => l.Contains("fail:", StringComparison.Ordinal) || l.Contains("crit:", StringComparison.Ordinal) || l.StartsWith("   at ", StringComparison.Ordinal)).Take(60)));
                }

                await process.DisposeAsync();
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    private void Note(string what) => output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {what}");

    private static async Task<(CliProcess Process, string Endpoint)> StartAsync(string dir, string prefix, string[] args)
    {
        var process = CliProcess.Start(dir, args);
        try
        {
            var line = await process.WaitForLineAsync(l => l.StartsWith(prefix + " https://", StringComparison.Ordinal), StartTimeout);
            await process.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C to stop.", StringComparison.Ordinal), StartTimeout);
            return (process, UpProcessFixture.Endpoint().Match(line).Value);
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    /// <summary>Allocates, holds briefly and releases in a loop; a lease whose record vanishes must be reported lost to its holder.</summary>
    private static async Task WorkAsync(IReadOnlyDictionary<string, GpuPoolClient> clients, IClusterStore store, int worker, WorkloadStats stats, CancellationToken stop)
    {
        var random = new Random(worker);
        while (!stop.IsCancellationRequested)
        {
            var request = new LeaseRequest
            {
                Tenant = Tenants[random.Next(Tenants.Length)],
                MemoryBytes = (ulong)random.Next(32, 193) * MiB,
                ComputeShare = random.Next(50, 301),
                Ttl = TimeSpan.FromSeconds(3),
                WaitTimeout = TimeSpan.FromMilliseconds(500),
            };
            Interlocked.Increment(ref stats.Attempts);
            Lease lease;
            try
            {
                lease = await clients[request.Tenant].AllocateAsync(request, CancellationToken.None);
            }
            catch (GpuPoolException ex) when (ex.Code is ErrorCode.ResourceExhausted or ErrorCode.QuotaExceeded or ErrorCode.Unavailable)
            {
                stats.Refused.AddOrUpdate(ex.Code, 1, static (_, n) => n + 1);
                if (ex.Code == ErrorCode.Unavailable)
                {
                    // Between leaders: back off as a client should.
                    await Task.Delay(100, CancellationToken.None);
                }

                continue;
            }
            catch (GpuPoolException ex)
            {
                stats.Unexpected.Add($"allocate: {ex.Code}: {ex.Message}");
                continue;
            }

            Interlocked.Increment(ref stats.Granted);
            await Task.Delay(random.Next(50, 400), CancellationToken.None);
            if (!lease.Lost.IsCancellationRequested && await RecordGoneAsync(store, lease.Id))
            {
                // The record went without a release: the holder must learn it from its next keepalive.
                var told = await WaitAsync(lease.Lost, TimeSpan.FromSeconds(8));
                if (!told)
                {
                    stats.LostUntold.Add($"{lease.Id} on {lease.Record.BrokerId}");
                }
            }

            try
            {
                await lease.ReleaseAsync(CancellationToken.None);
            }
            catch (GpuPoolException ex) when (ex.Code is ErrorCode.Unavailable)
            {
                // Both replicas were unreachable for a moment: the lease ends with its TTL.
                await lease.AbandonAsync();
            }

            await lease.DisposeAsync();
        }
    }

    private static async Task<bool> RecordGoneAsync(IClusterStore store, string leaseId)
    {
        try
        {
            return await store.GetAsync(StoreKeys.Leases + leaseId) is null;
        }
        catch (StoreUnavailableException)
        {
            return false;
        }
    }

    private static async Task<bool> WaitAsync(CancellationToken token, TimeSpan timeout)
    {
        try
        {
            await Task.Delay(timeout, token);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    private sealed class WorkloadStats
    {
        public long Attempts;
        public long Granted;

        public ConcurrentDictionary<ErrorCode, int> Refused { get; } = new();

        public ConcurrentBag<string> Unexpected { get; } = [];

        public ConcurrentBag<string> LostUntold { get; } = [];

        public override string ToString()
            => $"{Interlocked.Read(ref Attempts)} asked, {Interlocked.Read(ref Granted)} granted, refused {string.Join(", ", Refused.Select(p => $"{p.Key} {p.Value}"))}";
    }

    /// <summary>Reads the store and checks that no device is over its capacity and no tenant over its quota.</summary>
    private sealed class InvariantChecker(IClusterStore store, IReadOnlyDictionary<string, Quota> quotas)
    {
        public ConcurrentBag<string> Violations { get; } = [];

        public async Task RunAsync(CancellationToken stop)
        {
            while (!stop.IsCancellationRequested)
            {
                await CheckAsync();
                try
                {
                    await Task.Delay(200, stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }

        public async Task CheckAsync()
        {
            KvListing leases;
            try
            {
                leases = await store.ListAsync(StoreKeys.Leases);
            }
            catch (StoreUnavailableException)
            {
                return;
            }

            var records = leases.Entries.Select(e => LeaseRecord.Parser.ParseFrom(e.Value.Span)).ToArray();
            foreach (var device in records.GroupBy(r => (r.BrokerId, r.DeviceIndex)))
            {
                var memory = device.Aggregate(0UL, (sum, r) => sum + r.MemoryBytes);
                var share = device.Sum(r => (long)r.ComputeShare);
                if (memory > DeviceMemory || share > 1000)
                {
                    Violations.Add($"revision {leases.Revision}: device {device.Key.BrokerId}/{device.Key.DeviceIndex} holds {memory / MiB} MiB and share {share}");
                }
            }

            foreach (var tenant in records.GroupBy(r => r.Tenant))
            {
                var quota = quotas[tenant.Key];
                var milli = tenant.Sum(r => (long)r.ComputeShare);
                var memory = tenant.Aggregate(0UL, (sum, r) => sum + r.MemoryBytes);
                if (milli > quota.MaxMilliGpus || memory > quota.MaxMemoryBytes || tenant.Count() > quota.MaxLeases)
                {
                    Violations.Add($"revision {leases.Revision}: tenant {tenant.Key} holds {milli} milli-GPU, {memory / MiB} MiB, {tenant.Count()} leases");
                }
            }
        }
    }
}

/// <summary>Disposes a set of things at once.</summary>
internal sealed class CompositeDisposable(IEnumerable<IDisposable> items) : IDisposable
{
    public void Dispose()
    {
        foreach (var item in items)
        {
            item.Dispose();
        }
    }
}
