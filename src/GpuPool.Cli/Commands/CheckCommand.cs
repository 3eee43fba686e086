using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using GpuPool.Cli.Hosting;
using GpuPool.Client;
using GpuPool.Protocol;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary>
/// <c>gpupool check</c>: what an operator runs on a new client host: lease a small slice, open a session as a program
/// would, copy random bytes to the device and back, compare them, release; say which broker, transport and addresses
/// were used, and what the session fell back to if it could not reach the fast path.
/// </summary>
internal static class CheckCommand
{
    public static Command Create()
    {
        var scheduler = CliOptions.Scheduler();
        var bytes = CliOptions.Bytes("--bytes", "How many bytes to copy each way (copies of 8 MiB and more are striped over TCP)", "32MiB");
        var tenant = CliOptions.Tenant();
        var token = CliOptions.Token();
        var transport = new Option<string>("--transport") { Description = "auto (the default: the Unix socket on the broker's machine, else TCP, else gRPC), tcp, unix or grpc", DefaultValueFactory = _ => "auto" };
        transport.AcceptOnlyFromAmong("auto", "tcp", "unix", "grpc");

        var command = new Command("check", "Lease a small slice, copy bytes to it and back over the transport a program would get, and report") { scheduler, bytes, tenant, token, transport };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var size = parse.GetValue(bytes);
            if (size > 1UL << 30)
            {
                throw new ArgumentException($"--bytes {Units.FormatBytes(size)} is more than the 1 GiB a check copies at most");
            }

            using var client = CliPaths.Client(parse.GetValue(scheduler), tokenOption: parse.GetValue(token));
            await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = CliPaths.TenantFor(client, parse.GetValue(tenant)), MemoryBytes = Math.Max(size, 1UL << 20), ComputeShare = 1 }, cancellationToken);
            var r = lease.Record;
            AnsiConsole.MarkupLine(Markup.Escape($"lease {r.LeaseId} on broker {r.BrokerId} at {r.BrokerEndpoint} (fast path tcp {Or(r.BrokerFastPathTcp)}, unix {Or(r.BrokerFastPathUnix)}, machine {Or(r.BrokerMachineId)})"));

            var kind = Enum.Parse<SessionTransportKind>(parse.GetValue(transport)!, ignoreCase: true);
            await using var session = await lease.OpenSessionAsync(kind, cancellationToken);
            AnsiConsole.MarkupLine(Markup.Escape($"session over {session.Transport}"));

            var data = new byte[size];
            RandomNumberGenerator.Fill(data);
            var back = new byte[size];
            var ptr = await session.AllocAsync(size, cancellationToken);
            var clock = Stopwatch.StartNew();
            await session.CopyToDeviceAsync(ptr, data, cancellationToken: cancellationToken);
            await session.CopyToHostAsync(ptr, back, cancellationToken: cancellationToken);
            var seconds = clock.Elapsed.TotalSeconds;
            var same = data.AsSpan().SequenceEqual(back);
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(
                CultureInfo.InvariantCulture,
                $"copied {Units.FormatBytes(size)} to the device and back in {seconds:0.000} s ({2 * size / 1e6 / Math.Max(seconds, 1e-9):0} MB/s, {session.DataConnections} data connection(s)): {(same ? "identical" : $"DIFFERENT from offset {data.AsSpan().CommonPrefixLength(back)}")}")));
            await session.FreeAsync(ptr, cancellationToken);
            await session.DisposeAsync();
            await lease.ReleaseAsync(cancellationToken);
            AnsiConsole.MarkupLine(Markup.Escape($"released {r.LeaseId}"));
            return same ? 0 : 1;
        });
        return command;
    }

    private static string Or(string value) => value.Length > 0 ? value : "none";
}
