using System.CommandLine;
using GpuPool.Cli.Hosting;
using GpuPool.Client;
using GpuPool.Protocol;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary><c>gpupool lease</c>: ask the pool for a slice of a device, or whole devices on one host, and print the lease(s).</summary>
internal static class LeaseCommand
{
    public static Command Create()
    {
        var scheduler = CliOptions.Scheduler();
        var ask = CliOptions.LeaseAsk.Create("Memory limit of the slice", "Lease time to live, 5m by default; without --hold the lease ends this long after it is granted", TimeSpan.FromMinutes(5));
        var token = CliOptions.Token();
        var hold = new Option<bool>("--hold") { Description = "Keep the lease alive until Ctrl-C, then release it" };
        var devices = WholeDevices();

        var command = new Command("lease", "Lease a slice of a device, or whole devices on one host (--devices), and print it") { scheduler, token, hold, devices };
        foreach (var option in ask.All)
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            var gang = parse.GetValue(devices);
            if (gang is { } n)
            {
                // A gang member has all of its device: a size or share given too is a mistake worth saying, not ignoring.
                var given = new Option[] { ask.Memory, ask.Share }.Where(o => parse.GetResult(o) is { Implicit: false }).Select(o => o.Name).ToArray();
                if (given.Length > 0)
                {
                    throw new ArgumentException($"--devices {n} asks for whole devices, each with all of its memory and compute: leave out {string.Join(" and ", given)}");
                }
            }

            using var client = CliPaths.Client(parse.GetValue(scheduler), tokenOption: parse.GetValue(token));
            var request = ask.Request(parse, client);
            IReadOnlyList<Lease> leases = gang is { } count
                ? await client.AllocateGangAsync(request with { WholeDevices = count, MemoryBytes = 0 }, cancellationToken)
                : [await client.AllocateAsync(request, cancellationToken)];
            var lease = leases[0];

            var table = new Table().AddColumns("lease", "tenant", "class", "broker", "endpoint", "device", "memory", "share", "expires");
            foreach (var member in leases)
            {
                var r = member.Record;
                table.AddRow(
                    Markup.Escape(r.LeaseId), Markup.Escape(r.Tenant), Markup.Escape(r.PriorityClass), Markup.Escape(r.BrokerId), Markup.Escape(r.BrokerEndpoint),
                    r.DeviceIndex.ToString(System.Globalization.CultureInfo.InvariantCulture), Units.FormatBytes(r.MemoryBytes), r.ComputeShare.ToString(System.Globalization.CultureInfo.InvariantCulture) + (r.ShareMode == Protocol.V1.ShareMode.Capped ? " capped" : ""),
                    member.Expires.ToLocalTime().ToString("HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture));
            }

            AnsiConsole.Write(table);

            // Plain output, not the console's: it would wrap the token at the terminal's width (80 columns when piped).
            // One line per lease, in the table's order (a gang's members each open their own device's sessions).
            foreach (var member in leases)
            {
                Console.Out.WriteLine($"token: {member.Token}");
            }

            Console.Out.Flush();

            if (!parse.GetValue(hold))
            {
                // Leave the lease to its TTL: stop renewing without releasing.
                foreach (var member in leases)
                {
                    await member.AbandonAsync();
                }

                AnsiConsole.MarkupLine($"The {(leases.Count == 1 ? "lease ends" : "leases end")} at {lease.Expires.ToLocalTime():HH:mm:ss} unless renewed; run with --hold to keep {(leases.Count == 1 ? "it" : "them")} until Ctrl-C.");
                return 0;
            }

            // A gang's members are renewed, preempted, lost and released together: the first speaks for all.
            for (var i = 1; i < leases.Count; i++)
            {
                await leases[i].AbandonAsync();
            }

            AnsiConsole.MarkupLine($"Holding the {(leases.Count == 1 ? "lease" : "leases")}; press Ctrl-C to release {(leases.Count == 1 ? "it" : "them")}.");
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

    /// <summary>--devices N: a gang of N whole devices on one host.</summary>
    private static Option<int?> WholeDevices() => new("--devices")
    {
        Description = "Lease N whole devices on one host (a gang) instead of a slice: each with all of its memory and compute, so --memory and --share do not apply",
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value) && value is >= 1 and <= 1024)
            {
                return value;
            }

            result.AddError($"--devices '{text}' must be a whole number of devices from 1 to 1024");
            return null;
        },
    };
}
