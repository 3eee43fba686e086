using System.CommandLine;
using System.Globalization;
using GpuPool.Cli.Hosting;
using GpuPool.Client;
using GpuPool.Protocol;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary><c>gpupool ls</c>: devices, their capacity, and the live leases.</summary>
internal static class LsCommand
{
    public static Command Create()
    {
        var scheduler = CliOptions.Scheduler();
        var token = CliOptions.Token();
        var command = new Command("ls", "Show the pool's hosts, devices, capacity, live leases and waiting requests (a tenant sees only its own leases and requests)") { scheduler, token };
        command.SetAction(async (parse, cancellationToken) =>
        {
            using var client = CliPaths.Client(parse.GetValue(scheduler), tokenOption: parse.GetValue(token));
            var view = await client.ListClusterAsync(cancellationToken);

            AnsiConsole.MarkupLine(Markup.Escape($"scheduler {view.AnsweredBy}" + (view.Leader == view.AnsweredBy ? " (leader)" : $", leader {(view.Leader.Length > 0 ? view.Leader : "none (election under way)")}")
                + (view.AnsweredBy.StartsWith("http://", StringComparison.Ordinal) ? ", plaintext (--insecure)" : "")));
            var hosts = new Table().Title("hosts").AddColumns("broker", "host", "endpoint", "devices", "state", "tls");
            foreach (var b in view.Brokers)
            {
                hosts.AddRow(Markup.Escape(b.BrokerId), Markup.Escape(b.Host), Markup.Escape(b.Endpoint), b.Devices.Count.ToString(CultureInfo.InvariantCulture), b.Draining || view.Draining.Contains(b.BrokerId) ? "draining" : "up", b.Endpoint.StartsWith("https://", StringComparison.Ordinal) ? "on" : "[yellow]off[/]");
            }

            AnsiConsole.Write(hosts);
            var devices = new Table().Title("devices").AddColumns("broker", "device", "name", "backend", "memory", "leased", "free", "in use", "share leased", "leases", "util", "temp");
            foreach (var d in view.Devices)
            {
                var total = d.Device.MemoryTotalBytes;
                devices.AddRow(
                    Markup.Escape(d.BrokerId), d.Device.Index.ToString(CultureInfo.InvariantCulture), Markup.Escape(d.Device.Name), d.Device.Backend,
                    Units.FormatBytes(total), Units.FormatBytes(d.MemoryLeasedBytes), Units.FormatBytes(total - Math.Min(total, d.MemoryLeasedBytes)),
                    Units.FormatBytes(d.Device.MemoryUsedBytes), $"{d.ComputeLeased}/{d.Device.ComputeCapacity}", d.LeaseCount.ToString(CultureInfo.InvariantCulture),
                    d.Device.HasUtilizationPercent ? $"{d.Device.UtilizationPercent}%" : "-",
                    d.Device.HasTemperatureC ? $"{d.Device.TemperatureC}°C" : "-");
            }

            AnsiConsole.Write(devices);

            // Each lease's measured use, as its broker published it at its last heartbeat (a few seconds old at most).
            var usage = view.Brokers.SelectMany(b => b.Devices.SelectMany(d => d.LeaseUsage.Select(u => (b.BrokerId, u))))
                .ToDictionary(x => (x.BrokerId, x.u.LeaseId), x => x.u);
            var leases = new Table().Title("leases").AddColumns("lease", "tenant", "class", "broker", "device", "memory", "in use", "share", "device time", "last 10 s", "created", "ttl", "state");
            foreach (var l in view.Leases.OrderBy(l => l.Created.ToDateTimeOffset()))
            {
                var state = l.PreemptDeadline is not null ? "preempting" : l.Borrowed ? "borrowed" : string.IsNullOrEmpty(l.GangId) ? "" : $"gang {l.GangId}";
                var use = usage.GetValueOrDefault((l.BrokerId, l.LeaseId));
                leases.AddRow(
                    Markup.Escape(l.LeaseId), Markup.Escape(l.Tenant), Markup.Escape(l.PriorityClass), Markup.Escape(l.BrokerId), l.DeviceIndex.ToString(CultureInfo.InvariantCulture),
                    Units.FormatBytes(l.MemoryBytes), use is null ? "-" : Units.FormatBytes(use.MemoryUsedBytes),
                    l.ComputeShare.ToString(CultureInfo.InvariantCulture) + (l.ShareMode == Protocol.V1.ShareMode.Capped ? " capped" : ""),
                    use is null ? "-" : Units.FormatDuration(Units.FromNanoseconds(use.DeviceTimeNs)),
                    use is null ? "-" : $"{(use.RecentSharePpm / 1e4).ToString("0.0", CultureInfo.InvariantCulture)}%",
                    l.Created.ToDateTimeOffset().ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture), $"{l.TtlSeconds}s", Markup.Escape(state));
            }

            if (view.Leases.Count == 0)
            {
                AnsiConsole.MarkupLine("no live leases");
            }
            else
            {
                AnsiConsole.Write(leases);
            }

            if (view.Queue.Count > 0)
            {
                var queue = new Table().Title("queue").AddColumns("tenant", "class", "asks", "waiting since", "until");
                foreach (var q in view.Queue)
                {
                    queue.AddRow(
                        Markup.Escape(q.Tenant), Markup.Escape(q.PriorityClass),
                        q.WholeDevices > 0 ? $"{q.WholeDevices} whole devices" : $"{Units.FormatBytes(q.MemoryBytes)}, share {q.ComputeShare}",
                        q.Since.ToDateTimeOffset().ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                        q.Deadline.ToDateTimeOffset().ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture));
                }

                AnsiConsole.Write(queue);
            }

            return 0;
        });
        return command;
    }
}
