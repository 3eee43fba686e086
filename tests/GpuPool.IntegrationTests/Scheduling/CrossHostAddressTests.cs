using System.Diagnostics;
using System.Text;
using GpuPool.Client;
using GpuPool.Coordination.Etcd;
using GpuPool.IntegrationTests.Cli;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Testing.Etcd;
using Xunit.Abstractions;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// A pool whose parts are on different hosts of a virtual network (network namespaces on a bridge, each with its own
/// address and machine id, all with this machine's host name): etcd and a scheduler replica on one host, a standby
/// replica on another, two brokers started with <c>--listen 0.0.0.0</c> and no <c>--id</c> on two more, and a client on
/// a fifth. What each registers and publishes is an address the others can dial; the client, going through the
/// standby, leases and copies over the TCP fast path across hosts and gets its bytes back; a broker started with an id
/// another live broker holds is refused. Real processes (the built gpupool, etcd); needs root.
/// </summary>
public sealed class CrossHostAddressTests(ITestOutputHelper output)
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(45);

    [Fact]
    public async Task Brokers_and_schedulers_bound_to_every_address_are_reached_across_hosts_over_the_fast_path()
    {
        var clock = Stopwatch.StartNew();
        var dir = Directory.CreateTempSubdirectory("gpupool-crosshost-").FullName;
        var processes = new List<CliProcess>();
        var etcd = new Dictionary<string, Process>(StringComparer.Ordinal);
        var network = await VirtualNetwork.CreateAsync("store", "standby", "gpu1", "gpu2", "gpu3", "client");
        using var pki = new TestPki();
        try
        {
            var (store, standby, gpu1, gpu2, gpu3, client) = (network["store"], network["standby"], network["gpu1"], network["gpu2"], network["gpu3"], network["client"]);
            Note(clock, $"network up: {store.Address} scheduler, {standby.Address} standby, {gpu1.Address}, {gpu2.Address} and {gpu3.Address} brokers, {client.Address} client; etcd members on the first, second and fifth");

            // A three-member etcd, one member on each of three hosts.
            VirtualNetwork.Host[] members = [store, standby, gpu3];
            var initialCluster = string.Join(",", members.Select(m => $"{m.Name}=http://{m.Address}:2380"));
            foreach (var member in members)
            {
                etcd[member.Name] = StartEtcd(member, Path.Combine(dir, "etcd-" + member.Name), initialCluster);
            }

            var storeSpec = "etcd://" + string.Join(",", members.Select(m => $"{m.Address}:2379"));
            foreach (var member in members)
            {
                await WaitForEtcdAsync($"http://{member.Address}:2379", etcd[member.Name]);
            }

            Note(clock, "etcd up");

            var keyPath = Path.Combine(dir, "scheduler-key.pem");
            var publicKeyPath = Path.Combine(dir, "scheduler-key.pub.pem");
            using (var key = LeaseToken.LoadOrCreatePrivateKey(keyPath))
            {
                await File.WriteAllTextAsync(publicKeyPath, LeaseToken.ExportPublicPem(key));
            }

            // Both replicas share the signing key and the admin credential.
            var adminTokenPath = Path.Combine(dir, "admin-token");
            await File.WriteAllTextAsync(adminTokenPath, Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16)));

            // TLS on every port: each daemon holds a certificate of the pool's CA for its own host's address.
            string[] SchedulerArgs(VirtualNetwork.Host host) => ["scheduler", "--store", storeSpec, "--listen", "0.0.0.0", "--port", "7070", "--key", keyPath, "--admin-token-file", adminTokenPath, "--open-tenants", "--lease-ttl", "10s", .. pki.DaemonArgs($"s-{host.Name}", PoolRole.Scheduler, host.Address)];
            string[] BrokerArgs(VirtualNetwork.Host host, params string[] more) => ["broker", "--store", storeSpec, "--listen", "0.0.0.0", "--port", "7071", "--fast-path-port", "7072", "--scheduler-key", publicKeyPath, "--backend", "cpu", "--devices", "1", "--device-memory", "1GiB", .. pki.DaemonArgs($"b-{host.Name}", PoolRole.Broker, host.Address), .. more];

            // The leader first, so that the replica the client asks is a standby; then the rest side by side.
            var leader = Start(processes, store, dir, "leader", SchedulerArgs(store));
            await leader.WaitForLineAsync(l => l.StartsWith("role leader", StringComparison.Ordinal), StartTimeout);
            var second = Start(processes, standby, dir, "standby", SchedulerArgs(standby));
            var broker1 = Start(processes, gpu1, dir, "gpu1", BrokerArgs(gpu1));
            var broker2 = Start(processes, gpu2, dir, "gpu2", BrokerArgs(gpu2));
            var broker3 = Start(processes, gpu3, dir, "gpu3", BrokerArgs(gpu3));
            await Task.WhenAll(
                second.WaitForLineAsync(l => l.StartsWith("role standby", StringComparison.Ordinal), StartTimeout),
                broker1.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), StartTimeout),
                broker2.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), StartTimeout),
                broker3.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), StartTimeout));
            Note(clock, "schedulers and brokers up");

            // What each prints: its own host's address, found on the default route, never 0.0.0.0 or 127.0.0.1.
            Assert.Contains($"scheduler https://{store.Address}:7070\n", leader.Stdout, StringComparison.Ordinal);
            Assert.Contains($"scheduler https://{standby.Address}:7070\n", second.Stdout, StringComparison.Ordinal);
            foreach (var (process, host) in new[] { (broker1, gpu1), (broker2, gpu2), (broker3, gpu3) })
            {
                Assert.Contains($"broker https://{host.Address}:7071\n", process.Stdout, StringComparison.Ordinal);
                Assert.Contains($"listen 0.0.0.0, advertised as {host.Address} (eth0's address: the default route's interface)\n", process.Stdout, StringComparison.Ordinal);
            }

            // What the store holds, read from the test's side of the bridge.
            await using (var etcdStore = new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints(string.Join(",", members.Select(m => $"http://{m.Address}:2379")))))
            {
                Assert.Equal($"https://{store.Address}:7070", Encoding.UTF8.GetString((await etcdStore.GetAsync(StoreKeys.Leader))!.Value.Span));
                var records = (await etcdStore.ListAsync(StoreKeys.Brokers)).Entries.Select(e => BrokerRecord.Parser.ParseFrom(e.Value.Span)).OrderBy(r => r.Endpoint, StringComparer.Ordinal).ToList();
                Assert.Equal(3, records.Count);
                foreach (var (record, host) in records.Zip(new[] { gpu1, gpu2, gpu3 }))
                {
                    Assert.Equal(($"https://{host.Address}:7071", $"{host.Address}:7072", host.MachineId), (record.Endpoint, record.FastPathTcp, record.MachineId));

                    // Both hosts have this machine's host name; their default ids still differ, by machine id.
                    Assert.Equal($"{Environment.MachineName.ToLowerInvariant()}-{host.MachineId[..6]}", record.BrokerId);
                }
            }

            // A broker started with an id another live broker holds, on another host, is refused and overwrites nothing.
            var gpu1Id = $"{Environment.MachineName.ToLowerInvariant()}-{gpu1.MachineId[..6]}";
            var duplicate = Start(processes, standby, dir, "duplicate", BrokerArgs(standby, "--id", gpu1Id));
            Assert.True(await duplicate.WaitForExitAsync(StartTimeout), "the broker with a taken id did not stop");
            Assert.NotEqual(0, duplicate.ExitCode);
            Assert.Contains($"broker id '{gpu1Id}' is already registered by another live broker at https://{gpu1.Address}:7071 (host {Environment.MachineName}, machine {gpu1.MachineId[..8]})", Flat(duplicate.Stdout), StringComparison.Ordinal);
            Note(clock, "duplicate id refused");

            // The client, on a host of its own, goes through the standby: it forwards to the leader's published address.
            // The client holds the pool's CA and an admin certificate, in its config dir as `gpupool up` leaves them.
            var clientPki = Path.Combine(dir, "check", "pki");
            Directory.CreateDirectory(clientPki);
            File.Copy(pki.CaPath, Path.Combine(clientPki, "ca.crt"));
            var adminCert = pki.WriteFiles("operator", PoolRole.Admin);
            File.Copy(adminCert, Path.Combine(clientPki, "client.crt"));
            File.Copy(Path.ChangeExtension(adminCert, ".key"), Path.Combine(clientPki, "client.key"));
            var check = Start(processes, client, dir, "check", "check", "--scheduler", $"https://{standby.Address}:7070", "--bytes", "24MiB", "--tenant", "crosshost");
            Assert.True(await check.WaitForExitAsync(StartTimeout), $"gpupool check did not finish; stdout:\n{check.Stdout}\nstderr:\n{check.Stderr}");
            Note(clock, "check done");
            Assert.True(check.ExitCode == 0, $"gpupool check failed ({check.ExitCode}); stdout:\n{check.Stdout}\nstderr:\n{check.Stderr}");
            output.WriteLine($"gpupool check:\n{check.Stdout}");
            Assert.Matches($@"lease l-[0-9a-f]+ on broker \S+ at https://10\.77\.\d+\.[345]:7071 \(fast path tcp 10\.77\.\d+\.[345]:7072, unix \S+, machine ({gpu1.MachineId}|{gpu2.MachineId}|{gpu3.MachineId})\)", Flat(check.Stdout));
            Assert.Contains("session over tcp\n", check.Stdout, StringComparison.Ordinal);
            Assert.Matches(@"copied 24 MiB to the device and back in [\d.]+ s \(\d+ MB/s, 1 data connection\(s\)\): identical", Flat(check.Stdout));
            Assert.DoesNotContain("gpupool:", check.Stderr, StringComparison.Ordinal);

            // A tenant of its own: the operator issues its token from the client host; with only the pool's CA and that
            // token, the tenant trains the demo's classifier (its session over the fast path) and runs NVIDIA's vectorAdd
            // through the shim (over gRPC), each on a lease placed across the network.
            var schedulerUrl = $"https://{standby.Address}:7070";
            var add = Start(processes, client, dir, "check", "tenant", "add", "team-x", "--scheduler", schedulerUrl, "--admin-token", await File.ReadAllTextAsync(adminTokenPath));
            Assert.True(await add.WaitForExitAsync(StartTimeout) && add.ExitCode == 0, $"gpupool tenant add failed:\n{add.Stdout}\n{add.Stderr}");
            var tenantDir = Path.Combine(dir, "tenant");
            Directory.CreateDirectory(Path.Combine(tenantDir, "pki"));
            File.Copy(pki.CaPath, Path.Combine(tenantDir, "pki", "ca.crt"));
            var asTenant = new Dictionary<string, string?> { ["GPUPOOL_TENANT_TOKEN"] = add.Stdout.Trim() };
            var demo = CliProcess.StartInNamespace(client.Namespace, tenantDir, asTenant, "", "demo", "--scheduler", schedulerUrl, "--quick");
            processes.Add(demo);
            Assert.True(await demo.WaitForExitAsync(TimeSpan.FromMinutes(3)), $"gpupool demo did not finish; stdout:\n{demo.Stdout}");
            Assert.True(demo.ExitCode == 0, $"gpupool demo failed ({demo.ExitCode}); stdout:\n{demo.Stdout}\nstderr:\n{demo.Stderr}");
            Assert.Matches(@"of broker https://10\.77\.\d+\.[345]:7071, session over tcp", Flat(demo.Stdout));
            Assert.Contains("released l-", demo.Stdout, StringComparison.Ordinal);
            Note(clock, "the tenant's demo trained across the network");
            _ = GpuPool.IntegrationTests.Shim.ShimArtifacts.Shim;
            var vectorAdd = CliProcess.StartInNamespace(
                client.Namespace, tenantDir, asTenant, GpuPool.IntegrationTests.Shim.ShimArtifacts.CudaSamples,
                "run", "--scheduler", schedulerUrl, "--memory", "256MiB", "--transport", "grpc", "--verbose", "--", GpuPool.IntegrationTests.Shim.ShimArtifacts.CudaSample("vectorAdd"));
            processes.Add(vectorAdd);
            Assert.True(await vectorAdd.WaitForExitAsync(TimeSpan.FromMinutes(3)), $"gpupool run -- vectorAdd did not finish; stdout:\n{vectorAdd.Stdout}");
            Assert.True(vectorAdd.ExitCode == 0, $"gpupool run -- vectorAdd failed ({vectorAdd.ExitCode}); stdout:\n{vectorAdd.Stdout}\nstderr:\n{vectorAdd.Stderr}");
            Assert.Contains("Test PASSED", vectorAdd.Stdout, StringComparison.Ordinal);
            Assert.Contains("tenant team-x", Flat(vectorAdd.Stderr), StringComparison.Ordinal);
            Note(clock, "the tenant's vectorAdd ran across the network");

            // The chaos, one host at a time: the leading scheduler killed, an etcd member killed, a broker killed in
            // the middle of a copy, a broker's link cut (its veth down). One lease is held on each broker throughout.
            const ulong MiB = 1UL << 20;
            string IdOf(VirtualNetwork.Host host) => $"{Environment.MachineName.ToLowerInvariant()}-{host.MachineId[..6]}";
            using var operatorClient = new GpuPoolClient(schedulerUrl, pki.Client("operator", PoolRole.Admin));
            LeaseRequest Request(ulong mib) => new() { Tenant = "crosshost", MemoryBytes = mib * MiB, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(5), WaitTimeout = TimeSpan.FromSeconds(20) };

            // As a client should: a call refused as Unavailable (a store member that went away with a write in flight,
            // an election) is tried again, for a while. A lease whose write did land after all is held by no one and
            // ends at its TTL.
            async Task<Lease> AllocateAsync(ulong mib)
            {
                var clock = Stopwatch.StartNew();
                while (true)
                {
                    try
                    {
                        return await operatorClient.AllocateAsync(Request(mib));
                    }
                    catch (GpuPoolException ex) when (ex.Code == ErrorCode.Unavailable && clock.Elapsed < TimeSpan.FromSeconds(20))
                    {
                        output.WriteLine($"allocation refused, tried again: {ex.Message}");
                        await Task.Delay(200);
                    }
                }
            }

            var held = new List<Lease>();
            for (var i = 0; i < 3; i++)
            {
                held.Add(await operatorClient.AllocateAsync(Request(600)));
            }

            var (onGpu1, onGpu2, onGpu3) = (held.Single(l => l.Record.BrokerId == IdOf(gpu1)), held.Single(l => l.Record.BrokerId == IdOf(gpu2)), held.Single(l => l.Record.BrokerId == IdOf(gpu3)));

            // 1. The leading scheduler dies: the standby leads, and grants.
            await leader.DisposeAsync();
            async Task<bool> StandbyLeadsAsync()
            {
                try
                {
                    return (await operatorClient.ListClusterAsync()).Leader == schedulerUrl;
                }
                catch (GpuPoolException ex) when (ex.Code == ErrorCode.Unavailable)
                {
                    // An election under way: the standby says so, and a client asks again.
                    return false;
                }
            }

            await Poll.UntilAsync(StandbyLeadsAsync, TimeSpan.FromSeconds(30), "the standby leads");
            await (await AllocateAsync(100)).DisposeAsync();
            Note(clock, "leader killed; the standby leads and grants");

            // 2. An etcd member that does not lead dies: the other two keep a quorum, and the pool grants.
            var follower = await EtcdFollowerAsync(members);
            etcd[follower.Name].Kill(entireProcessTree: true);
            await (await AllocateAsync(100)).DisposeAsync();
            Note(clock, $"etcd member on {follower.Name} killed; the pool grants");

            // 3. A broker is killed in the middle of a copy over its fast path: the copy fails at once naming the broker.
            await using (var session = await onGpu2.OpenSessionAsync(SessionTransportKind.Tcp))
            {
                var bytes = new byte[32 << 20];
                var target = await session.AllocAsync((ulong)bytes.Length);
                var copiesDone = 0;
                var copying = Task.Run(async () =>
                {
                    while (true)
                    {
                        await session.CopyToDeviceAsync(target, bytes);
                        Interlocked.Increment(ref copiesDone);
                    }
                });
                await Poll.UntilAsync(() => Volatile.Read(ref copiesDone) >= 1 || copying.IsCompleted, TimeSpan.FromSeconds(30), "copies to gpu2 are under way");
                await broker2.DisposeAsync();
                var failed = await Assert.ThrowsAsync<GpuPoolException>(() => copying.WaitAsync(TimeSpan.FromSeconds(30)));
                Note(clock, $"broker on gpu2 killed mid-copy: {failed.Code}: {failed.Message}");
                Assert.Equal(ErrorCode.Unavailable, failed.Code);
                Assert.Contains(IdOf(gpu2), failed.Message, StringComparison.Ordinal);
            }

            // 4. A broker's link is cut: nothing ends its process, yet it is out of the pool once its heartbeat lapses.
            var cut = await VirtualNetwork.RunInAsync(gpu1, "ip", "link", "set", "eth0", "down");
            Assert.True(cut.Code == 0, cut.Stderr);
            Note(clock, "gpu1's link cut");

            // The holders of the leases on both are told; the lease on the third broker lives on, and new leases go there.
            foreach (var (lease, host) in new[] { (onGpu1, gpu1), (onGpu2, gpu2) })
            {
                await Poll.UntilAsync(() => lease.Lost.IsCancellationRequested, TimeSpan.FromSeconds(45), $"the holder of the lease on {host.Name} is told");
                Note(clock, $"told: {lease.LostReason?.Message}");
                Assert.Contains($"its broker {IdOf(host)} stopped heartbeating", lease.LostReason!.Message, StringComparison.Ordinal);
            }

            Assert.False(onGpu3.Lost.IsCancellationRequested, $"the lease on gpu3 was lost: {onGpu3.LostReason?.Message}");
            await using (var placed = await AllocateAsync(300))
            {
                Assert.Equal(IdOf(gpu3), placed.Record.BrokerId);
            }

            foreach (var lease in held)
            {
                await lease.DisposeAsync();
            }
        }
        finally
        {
            foreach (var process in processes)
            {
                await process.DisposeAsync();
            }

            foreach (var member in etcd.Values)
            {
                if (!member.HasExited)
                {
                    member.Kill(entireProcessTree: true);
                    await member.WaitForExitAsync();
                }

                member.Dispose();
            }

            foreach (var process in processes.Where(p => p.Stderr.Length > 0))
            {
                output.WriteLine($"stderr of a gpupool process:\n{process.Stderr}");
            }

            await network.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }

        Assert.Empty(await network.LeftoversAsync());
        Note(clock, "network removed");
    }

    private static CliProcess Start(List<CliProcess> processes, VirtualNetwork.Host host, string dir, string name, params string[] args)
    {
        var configDir = Path.Combine(dir, name);
        Directory.CreateDirectory(configDir);
        var process = CliProcess.StartInNamespace(host.Namespace, configDir, args);
        processes.Add(process);
        return process;
    }

    /// <summary>An etcd member in <paramref name="host"/>'s namespace, named after the host, of the cluster <paramref name="initialCluster"/> lists.</summary>
    private static Process StartEtcd(VirtualNetwork.Host host, string dataDir, string initialCluster)
    {
        var client = $"http://{host.Address}:2379";
        var peer = $"http://{host.Address}:2380";
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            "netns", "exec", host.Namespace, EtcdCluster.FindBinary(),
            "--name", host.Name, "--data-dir", dataDir,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", Path.GetFileName(Path.GetDirectoryName(dataDir))!,
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        })
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>An etcd member that does not lead, from the members' metrics (etcd_server_is_leader).</summary>
    private static async Task<VirtualNetwork.Host> EtcdFollowerAsync(IReadOnlyList<VirtualNetwork.Host> members)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        foreach (var member in members)
        {
            var metrics = await http.GetStringAsync($"http://{member.Address}:2379/metrics");
            if (metrics.Split('\n').Any(l => l.Trim() == "etcd_server_is_leader 0"))
            {
                return member;
            }
        }

        throw new InvalidOperationException("every etcd member says it leads");
    }

    private static async Task WaitForEtcdAsync(string url, Process etcd)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + StartTimeout;
        while (true)
        {
            Assert.False(etcd.HasExited, "etcd exited at start");
            try
            {
                if ((await http.GetStringAsync(url + "/health")).Contains("\"health\":\"true\"", StringComparison.Ordinal))
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                // Not up yet.
            }

            Assert.True(DateTime.UtcNow < deadline, $"etcd at {url} was not healthy within {StartTimeout.TotalSeconds} s");
            await Task.Delay(100);
        }
    }

    /// <summary>The output with Spectre's line wrapping undone (it wraps at 200 columns when writing to a pipe).</summary>
    private static string Flat(string text) => System.Text.RegularExpressions.Regex.Replace(text, @" *\n *", " ");

    private void Note(Stopwatch clock, string what) => output.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s  {what}");
}
