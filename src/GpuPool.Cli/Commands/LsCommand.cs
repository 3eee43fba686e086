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
        var command = new Command("ls", "Show the pool's devices, their capacity and the live leases") { scheduler };
        command.SetAction(async (parse, cancellationToken) =>
        {
            using var client = new GpuPoolClient(CliPaths.ResolveScheduler(parse.GetValue(scheduler)));
            var view = await client.ListClusterAsync(cancellationToken);

            var devices = new Table().Title("devices").AddColumns("broker", "device", "name", "backend", "memory", "leased", "free", "in use", "share leased", "leases");
            foreach (var d in view.Devices)
            {
                var total = d.Device.MemoryTotalBytes;
                devices.AddRow(
                    Markup.Escape(d.BrokerId), d.Device.Index.ToString(CultureInfo.InvariantCulture), Markup.Escape(d.Device.Name), d.Device.Backend,
                    Units.FormatBytes(total), Units.FormatBytes(d.MemoryLeasedBytes), Units.FormatBytes(total - Math.Min(total, d.MemoryLeasedBytes)),
                    Units.FormatBytes(d.Device.MemoryUsedBytes), $"{d.ComputeLeased}/{d.Device.ComputeCapacity}", d.LeaseCount.ToString(CultureInfo.InvariantCulture));
            }

            AnsiConsole.Write(devices);

            var leases = new Table().Title("leases").AddColumns("lease", "tenant", "broker", "device", "memory", "share", "created", "ttl");
            foreach (var l in view.Leases.OrderBy(l => l.Created.ToDateTimeOffset()))
            {
                leases.AddRow(
                    Markup.Escape(l.LeaseId), Markup.Escape(l.Tenant), Markup.Escape(l.BrokerId), l.DeviceIndex.ToString(CultureInfo.InvariantCulture),
                    Units.FormatBytes(l.MemoryBytes), l.ComputeShare.ToString(CultureInfo.InvariantCulture),
                    l.Created.ToDateTimeOffset().ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture), $"{l.TtlSeconds}s");
            }

            if (view.Leases.Count == 0)
            {
                AnsiConsole.MarkupLine("no live leases");
            }
            else
            {
                AnsiConsole.Write(leases);
            }

            return 0;
        });
        return command;
    }
}
