using System.CommandLine;
using GpuPool.Broker;
using GpuPool.Broker.Hosting;
using GpuPool.Cli.Hosting;
using GpuPool.Coordination;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.Tokens;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary>
/// <c>gpupool scheduler</c> and <c>gpupool broker</c>: one part of a pool of many hosts each, in the foreground
/// until Ctrl-C, sharing a coordination store (etcd or Consul; embedded only when both run in one process).
/// </summary>
internal static class ServeCommands
{
    private static Option<string> Store() => new("--store")
    {
        Description = $"Coordination store: {StoreFactory.Help}",
        Required = true,
    };


    public static Command Scheduler()
    {
        var store = Store();
        var listen = CliOptions.Listen();
        var advertise = CliOptions.Advertise("this replica publishes for the other replicas to forward allocations to");
        var port = CliOptions.Ranged("--port", "Port; 0 picks a free one", 7070, 0, 65535);
        var key = new Option<string>("--key") { Description = "The scheduler's signing key (PEM); every replica of a pool uses the same one; made if missing", DefaultValueFactory = _ => CliPaths.SchedulerKey };
        var adminToken = new Option<string?>("--admin-token-file") { Description = "File holding the admin credential (default: the config dir's admin-token, made if missing)" };
        var ttl = CliOptions.Duration("--lease-ttl", "Default lease time to live", TimeSpan.FromSeconds(30));
        var grace = CliOptions.Duration("--preemption-grace", "How long a preempted lease's holder has before it is revoked", TimeSpan.FromSeconds(10));
        var passOver = CliOptions.Duration("--max-pass-over", "How long a waiting request may be passed over by later requests of its class before it goes ahead of them", GpuPool.Scheduler.SchedulerOptions.DefaultMaxPassOver);
        var openTenants = new Option<bool>("--open-tenants") { Description = "Give tenants without a quota an unlimited one (default: refuse them)" };
        var verbose = DaemonLogging.Verbose();
        var logFormat = DaemonLogging.Format();
        var tls = CliOptions.Tls.Create("scheduler");
        var storeAccess = CliOptions.StoreAccess.Create();
        var command = new Command("scheduler", "Run a scheduler replica of a pool of many hosts until Ctrl-C")
        {
            store, listen, advertise, port, key, adminToken, ttl, grace, passOver, openTenants, verbose, logFormat,
        };
        foreach (var option in tls.All.Concat(storeAccess.All))
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            using var loggerFactory = DaemonLogging.Create(parse.GetValue(verbose), parse.GetValue(logFormat)!);
            var serverTls = tls.Resolve(parse, "scheduler");
            var tokenFile = parse.GetValue(adminToken);
            await using var clusterStore = StoreFactory.Open(parse.GetValue(store)!, storeAccess.Resolve(parse, serverTls));
            await using var host = await SchedulerHost.StartAsync(
                new SchedulerOptions
                {
                    ListenAddress = parse.GetValue(listen)!,
                    AdvertiseAddress = parse.GetValue(advertise),
                    Port = parse.GetValue(port),
                    SigningKey = LeaseToken.LoadOrCreatePrivateKey(parse.GetValue(key)!),
                    AdminToken = tokenFile is null ? CliPaths.LoadOrCreateAdminToken() : File.ReadAllText(tokenFile).Trim(),
                    DefaultLeaseTtl = parse.GetValue(ttl),
                    PreemptionGrace = parse.GetValue(grace),
                    MaxPassOver = parse.GetValue(passOver),
                    OpenTenants = parse.GetValue(openTenants),
                    Tls = serverTls,
                },
                clusterStore,
                loggerFactory,
                cancellationToken);
            AnsiConsole.MarkupLine(Markup.Escape($"scheduler {host.Endpoint}"));
            SayTls(serverTls);
            PrintAddresses(parse.GetValue(listen)!, host.Advertised);
            AnsiConsole.MarkupLine(host.IsLeader ? "role leader" : "role standby");
            return await RunUntilStoppedAsync(cancellationToken);
        });
        command.Subcommands.Add(ExportKey());
        return command;
    }

    /// <summary><c>gpupool scheduler export-key --public</c>: the signing key's public half (PEM) on stdout, what brokers are given.</summary>
    private static Command ExportKey()
    {
        var key = new Option<string>("--key") { Description = "The scheduler's signing key (PEM)", DefaultValueFactory = _ => CliPaths.SchedulerKey };
        var publicHalf = new Option<bool>("--public") { Description = "Write the public half (the only half a broker needs; required, so that a private key is never written by mistake)" };
        var command = new Command("export-key", "Write the scheduler's public key (PEM) for brokers' --scheduler-key") { key, publicHalf };
        command.SetAction(parse =>
        {
            if (!parse.GetValue(publicHalf))
            {
                Console.Error.WriteLine("export-key writes the public half only, for brokers: give --public");
                return 2;
            }

            var path = parse.GetValue(key)!;
            if (!File.Exists(path))
            {
                Console.Error.WriteLine($"no scheduler key at {path}: give --key, or start the scheduler once to make it");
                return 1;
            }

            using var pair = LeaseToken.ImportPublicPem(File.ReadAllText(path), out _);
            Console.Out.Write(pair.ExportSubjectPublicKeyInfoPem());
            Console.Out.WriteLine();
            return 0;
        });
        return command;
    }

    public static Command Broker()
    {
        var store = Store();
        var id = new Option<string?>("--id") { Description = "Broker id, unique in the pool (default: the host name and the first six hex digits of its machine id)" };
        var listen = CliOptions.Listen();
        var advertise = CliOptions.Advertise("the broker registers for its gRPC endpoint and fast path");
        var port = CliOptions.Ranged("--port", "Port; 0 picks a free one", 7071, 0, 65535);
        var fastPathPort = CliOptions.Ranged("--fast-path-port", "Raw fast-path port; 0 picks a free one, -1 turns it off", 7072, -1, 65535);
        var key = new Option<string>("--scheduler-key") { Description = "The scheduler's public key (PEM; gpupool scheduler export-key --public writes it): only tokens it signed open sessions", Required = true };
        var backend = new Option<string>("--backend") { Description = "Device backend: auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
        backend.AcceptOnlyFromAmong("auto", "cpu", "cuda");
        var devices = CliOptions.Ranged("--devices", "Number of cpu devices to emulate", 1, 1, 64);
        var memory = CliOptions.Bytes("--device-memory", "Memory of each cpu device", "8GiB");
        var deviceSlots = CliOptions.DeviceSlots();
        var kernelDeadline = CliOptions.Duration("--kernel-deadline", "How long one launch of a program's kernel may run on a cpu device before it is stopped", TimeSpan.FromMinutes(2));
        var heartbeat = CliOptions.Duration("--heartbeat-ttl", "How long after its last heartbeat the pool counts this broker down", TimeSpan.FromSeconds(10));
        var verbose = DaemonLogging.Verbose();
        var logFormat = DaemonLogging.Format();
        var tls = CliOptions.Tls.Create("broker");
        var storeAccess = CliOptions.StoreAccess.Create();
        var command = new Command("broker", "Run a broker that lends this host's devices to a pool until Ctrl-C")
        {
            store, id, listen, advertise, port, fastPathPort, key, backend, devices, memory, deviceSlots, kernelDeadline, heartbeat, verbose, logFormat,
        };
        foreach (var option in tls.All.Concat(storeAccess.All))
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            using var loggerFactory = DaemonLogging.Create(parse.GetValue(verbose), parse.GetValue(logFormat)!);
            var (devicesBackend, note) = LocalPool.CreateBackend(parse.GetValue(backend)!, parse.GetValue(devices), parse.GetValue(memory), parse.GetValue(kernelDeadline), parse.GetValue(deviceSlots));
            using (devicesBackend)
            {
                var serverTls = tls.Resolve(parse, "broker");
                var storeSecurity = storeAccess.Resolve(parse, serverTls);
                var keyPath = parse.GetValue(key)!;
                if (!File.Exists(keyPath))
                {
                    throw new ArgumentException($"--scheduler-key names {keyPath}, which does not exist: copy the scheduler's public key there (gpupool scheduler export-key --public writes it)");
                }

                var pem = File.ReadAllText(keyPath);
                var schedulerKey = LeaseToken.ImportPublicPem(pem, out var wasPrivate);
                if (wasPrivate)
                {
                    // A broker only verifies: it keeps the public half, and says the private key should not be here.
                    var warning = $"{parse.GetValue(key)} holds the scheduler's private key; a broker needs only its public half (gpupool scheduler export-key --public writes it): using the public half, but remove the private key from this host";
                    Console.Error.WriteLine("warning: " + warning);
                    loggerFactory.CreateLogger("GpuPool.Cli.Broker").LogWarning("{Warning}", warning);
                }

                await using var clusterStore = StoreFactory.Open(parse.GetValue(store)!, storeSecurity);
                await using var host = await BrokerHost.StartAsync(
                    new BrokerOptions
                    {
                        BrokerId = parse.GetValue(id) ?? BrokerOptions.DefaultBrokerId(CliPaths.ConfigDir),
                        ListenAddress = parse.GetValue(listen)!,
                        AdvertiseAddress = parse.GetValue(advertise),
                        StateDirectory = CliPaths.ConfigDir,
                        Port = parse.GetValue(port),
                        FastPathPort = parse.GetValue(fastPathPort),
                        SchedulerPublicKey = schedulerKey,
                        Backend = devicesBackend,
                        RegistrationTtl = parse.GetValue(heartbeat),
                        Tls = serverTls,
                    },
                    clusterStore,
                    loggerFactory,
                    cancellationToken);
                AnsiConsole.MarkupLine(Markup.Escape($"broker {host.Endpoint}"));
                AnsiConsole.MarkupLine(Markup.Escape($"id {host.Id}"));
                SayTls(serverTls);
                if (host.FastPath.Tcp.Length > 0)
                {
                    AnsiConsole.MarkupLine(Markup.Escape($"fast path tcp {host.FastPath.Tcp}, unix {host.FastPath.Unix}"));
                }

                PrintAddresses(parse.GetValue(listen)!, host.Advertised);
                AnsiConsole.MarkupLine(Markup.Escape($"backend {note}"));
                return await RunUntilStoppedAsync(cancellationToken);
            }
        });
        return command;
    }

    /// <summary>What the server listens on and what it advertises, and why; a warning when other hosts cannot dial it.</summary>
    internal static void PrintAddresses(string listen, AdvertisedAddress advertised)
    {
        AnsiConsole.MarkupLine(Markup.Escape($"listen {listen}, advertised as {advertised.Host} ({advertised.Reason})"));
        if (advertised.Warning is { } warning)
        {
            Console.Error.WriteLine($"warning: {warning}");
        }
    }


    /// <summary>One line on TLS: the certificate served and the CA, or a warning that the daemon serves plaintext.</summary>
    internal static void SayTls(Protocol.Security.PoolTls? tls)
    {
        if (tls is null)
        {
            Console.Error.WriteLine("warning: TLS is off (--insecure): lease tokens, credentials and tensors cross the network readable");
            AnsiConsole.MarkupLine("tls off (--insecure)");
            return;
        }

        AnsiConsole.MarkupLine(Markup.Escape($"tls {tls.Certificate!.Subject}, CA {tls.Authority.Subject}, until {tls.Certificate.NotAfter.ToUniversalTime():u}"));
    }

    private static async Task<int> RunUntilStoppedAsync(CancellationToken cancellationToken)
    {
        AnsiConsole.MarkupLine("Press Ctrl-C to stop.");
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }

        AnsiConsole.MarkupLine("Stopping.");
        return 0;
    }
}
