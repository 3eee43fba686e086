using System.CommandLine;
using GpuPool.Cli.Hosting;
using GpuPool.Client;
using GpuPool.Protocol;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary><c>gpupool lease</c>: ask the pool for a slice of a device and print the lease.</summary>
internal static class LeaseCommand
{
    public static Command Create()
    {
        var scheduler = CliOptions.Scheduler();
        var ask = CliOptions.LeaseAsk.Create("Memory limit of the slice", "Lease time to live, 5m by default; without --hold the lease ends this long after it is granted", TimeSpan.FromMinutes(5));
        var token = CliOptions.Token();
        var hold = new Option<bool>("--hold") { Description = "Keep the lease alive until Ctrl-C, then release it" };

        var command = new Command("lease", "Lease a slice of a device and print it") { scheduler, token, hold };
        foreach (var option in ask.All)
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            using var client = CliPaths.Client(parse.GetValue(scheduler), tokenOption: parse.GetValue(token));
            var lease = await client.AllocateAsync(ask.Request(parse, client), cancellationToken);

            var r = lease.Record;
            var table = new Table().AddColumns("lease", "tenant", "class", "broker", "endpoint", "device", "memory", "share", "expires");
            table.AddRow(
                Markup.Escape(r.LeaseId), Markup.Escape(r.Tenant), Markup.Escape(r.PriorityClass), Markup.Escape(r.BrokerId), Markup.Escape(r.BrokerEndpoint),
                r.DeviceIndex.ToString(System.Globalization.CultureInfo.InvariantCulture), Units.FormatBytes(r.MemoryBytes), r.ComputeShare.ToString(System.Globalization.CultureInfo.InvariantCulture) + (r.ShareMode == Protocol.V1.ShareMode.Capped ? " capped" : ""),
                lease.Expires.ToLocalTime().ToString("HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture));
            AnsiConsole.Write(table);
            // Plain output, not the console's: it would wrap the token at the terminal's width (80 columns when piped).
            Console.Out.WriteLine($"token: {lease.Token}");
            Console.Out.Flush();

            if (!parse.GetValue(hold))
            {
                // Leave the lease to its TTL: stop renewing without releasing.
                await lease.AbandonAsync();
                AnsiConsole.MarkupLine($"The lease ends at {lease.Expires.ToLocalTime():HH:mm:ss} unless renewed; run with --hold to keep it until Ctrl-C.");
                return 0;
            }

            AnsiConsole.MarkupLine("Holding the lease; press Ctrl-C to release it.");
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lease.Lost);
            using var preempting = lease.Preempting.Register(() => AnsiConsole.MarkupLine(
                $"[yellow]The lease is being preempted:[/] {Markup.Escape(lease.PreemptReason ?? "")}; it is revoked at {lease.PreemptDeadline?.ToLocalTime():HH:mm:ss}."));
            try
            {
                await Task.Delay(Timeout.Infinite, linked.Token);
            }
            catch (OperationCanceledException)
            {
            }

            if (lease.Lost.IsCancellationRequested)
            {
                AnsiConsole.MarkupLine($"[red]The lease was lost:[/] {Markup.Escape(lease.LostReason?.Message ?? "unknown reason")}");
                return 1;
            }

            await lease.ReleaseAsync(CancellationToken.None);
            AnsiConsole.MarkupLine("Released.");
            return 0;
        });
        return command;
    }
}
