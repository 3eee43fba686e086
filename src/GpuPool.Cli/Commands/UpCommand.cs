using System.CommandLine;
using GpuPool.Cli.Hosting;
using GpuPool.Protocol;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary><c>gpupool up</c>: the whole pool on this machine, in the foreground, until Ctrl-C.</summary>
internal static class UpCommand
{
    public static Command Create()
    {
        var listen = CliOptions.Listen();
        var advertise = CliOptions.Advertise("the scheduler and the broker publish for other hosts to dial");
        var port = CliOptions.Ranged("--port", "Scheduler port; 0 picks a free one", 7070, 0, 65535);
        var brokerPort = CliOptions.Ranged("--broker-port", "Broker port; 0 picks a free one", 7071, 0, 65535);
        var fastPathPort = CliOptions.Ranged("--fast-path-port", "Broker's raw fast-path port; 0 picks a free one, -1 turns the fast path off", 7072, -1, 65535);
        var backend = new Option<string>("--backend") { Description = "Device backend: auto, cpu or cuda", DefaultValueFactory = _ => "auto" };
        backend.AcceptOnlyFromAmong("auto", "cpu", "cuda");
        var devices = CliOptions.Ranged("--devices", "Number of cpu devices to emulate", 1, 1, 64);
        var memory = CliOptions.Bytes("--device-memory", "Memory of each cpu device", "8GiB");
        var deviceSlots = CliOptions.DeviceSlots();
        var kernelDeadline = CliOptions.Duration("--kernel-deadline", "How long one launch of a program's kernel may run on a cpu device before it is stopped", TimeSpan.FromMinutes(2));
        var ttl = CliOptions.Duration("--lease-ttl", "Default lease time to live", TimeSpan.FromSeconds(30));
        var verbose = DaemonLogging.Verbose();
        var logFormat = DaemonLogging.Format();
        var insecure = new Option<bool>("--insecure") { Description = "Serve plaintext, without TLS: only on a network you trust (by default the pool's CA in the config dir issues certificates for the scheduler, the broker and your commands)" };

        var command = new Command("up", "Run a whole pool on this machine (embedded store, scheduler, broker) until Ctrl-C")
        {
            listen, advertise, port, brokerPort, fastPathPort, backend, devices, memory, deviceSlots, kernelDeadline, ttl, insecure, verbose, logFormat,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            using var loggerFactory = DaemonLogging.Create(parse.GetValue(verbose), parse.GetValue(logFormat)!);
            var options = new LocalPoolOptions
            {
                Listen = parse.GetValue(listen)!,
                Advertise = parse.GetValue(advertise),
                SchedulerPort = parse.GetValue(port),
                BrokerPort = parse.GetValue(brokerPort),
                FastPathPort = parse.GetValue(fastPathPort),
                Backend = parse.GetValue(backend)!,
                Devices = parse.GetValue(devices),
                DeviceMemory = parse.GetValue(memory),
                KernelDeadline = parse.GetValue(kernelDeadline),
                DeviceSlots = parse.GetValue(deviceSlots),
                LeaseTtl = parse.GetValue(ttl),
                KeyPath = CliPaths.SchedulerKey,
                AdminToken = CliPaths.LoadOrCreateAdminToken(),
                StorePath = CliPaths.StoreFile,
                PkiDir = parse.GetValue(insecure) ? null : CliPaths.PkiDir,
            };
            Directory.CreateDirectory(Path.GetDirectoryName(CliPaths.StoreFile)!);

            await using var pool = await LocalPool.StartAsync(options, loggerFactory, cancellationToken);
            Directory.CreateDirectory(CliPaths.ConfigDir);
            await File.WriteAllTextAsync(CliPaths.SchedulerEndpointFile, pool.Scheduler.Endpoint, CancellationToken.None);

            var table = new Table().NoBorder().HideHeaders().AddColumn("").AddColumn("");
            table.AddRow("scheduler", pool.Scheduler.Endpoint);
            table.AddRow("broker", Markup.Escape($"{pool.Broker.Endpoint} (id {pool.Broker.Id})"));
            table.AddRow("listen", Markup.Escape($"{options.Listen}, advertised as {pool.Broker.Advertised.Host} ({pool.Broker.Advertised.Reason})"));
            if (pool.Broker.FastPath.Tcp.Length > 0)
            {
                table.AddRow("fast path", Markup.Escape($"tcp {pool.Broker.FastPath.Tcp}, unix {pool.Broker.FastPath.Unix}"));
            }

            foreach (var d in pool.Backend.Devices)
            {
                table.AddRow($"device {d.Index}", Markup.Escape($"{d.Name} ({d.Backend}, {Units.FormatBytes(d.MemoryTotal)}, {d.MultiprocessorCount} {(d.Backend == "cuda" ? "SMs" : "slots")})"));
            }

            table.AddRow("backend", Markup.Escape(pool.BackendNote));
            table.AddRow("store", Markup.Escape($"embedded, kept in {CliPaths.StoreFile}"));
            table.AddRow("admin token", Markup.Escape(CliPaths.AdminTokenFile));
            table.AddRow("tls", Markup.Escape(options.PkiDir is null
                ? "off (--insecure): tokens, credentials and tensors cross the network readable"
                : $"on, pool CA and certificates in {options.PkiDir} (your commands use client.crt there)"));
            if (options.PkiDir is null)
            {
                await Console.Error.WriteLineAsync("warning: TLS is off (--insecure): lease tokens, credentials and tensors cross the network readable");
            }
            if (pool.Broker.Advertised.Warning is { } addressWarning)
            {
                await Console.Error.WriteLineAsync($"warning: {addressWarning}");
            }

            foreach (var warning in pool.StoreWarnings)
            {
                AnsiConsole.MarkupLine($"[yellow]store:[/] {Markup.Escape(warning)}");
            }

            table.AddRow("key", Markup.Escape(CliPaths.SchedulerKey));
            AnsiConsole.MarkupLine("[green]GpuPool is up[/]");
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine("Press Ctrl-C to stop.");

            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }

            AnsiConsole.MarkupLine("Stopping: ending leases and freeing device memory...");
            try
            {
                File.Delete(CliPaths.SchedulerEndpointFile);
            }
            catch (IOException)
            {
            }

            await pool.DisposeAsync();
            AnsiConsole.MarkupLine("[green]Stopped.[/]");
            return 0;
        });
        return command;
    }
}
