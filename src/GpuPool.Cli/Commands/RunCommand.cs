using System.CommandLine;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using GpuPool.Cli.Hosting;
using GpuPool.Client;
using GpuPool.Protocol;

namespace GpuPool.Cli.Commands;

/// <summary>
/// <c>gpupool run -- PROGRAM ARGS</c>: lease a slice, run an unmodified CUDA program on it through the libcuda
/// shim, release when the program exits (whatever its exit code), and exit with the program's exit code. The
/// program finds the shim as libcuda.so.1 in a temporary folder put first on LD_LIBRARY_PATH; the lease, broker
/// and token reach it in GPUPOOL_* variables (docs/shim.md). This process keeps the lease alive meanwhile.
/// Its own messages go to stderr, so the program's stdout is the program's.
/// </summary>
internal static class RunCommand
{
    /// <summary>How long a program gets to exit after Ctrl-C is passed on to it before it is killed.</summary>
    private static readonly TimeSpan InterruptGrace = TimeSpan.FromSeconds(10);

    public static Command Create()
    {
        var scheduler = CliOptions.Scheduler();
        var ask = CliOptions.LeaseAsk.Create(
            "Memory limit of the slice (the program sees it as the device's memory)",
            "Lease time to live, the pool's default if not given: the lease is renewed while the program runs, and ends this long after the last renewal if this command dies",
            null);
        var token = CliOptions.Token();
        var transport = new Option<string>("--transport") { Description = "How the program's calls reach the broker: auto, tcp, unix or grpc", DefaultValueFactory = _ => "auto" };
        transport.AcceptOnlyFromAmong("auto", "tcp", "unix", "grpc");
        var verbose = new Option<bool>("--verbose") { Description = "Say what was leased, and have the shim log every failed CUDA call (GPUPOOL_SHIM_LOG=1)" };
        var program = new Argument<string[]>("program")
        {
            Description = "The program and its arguments, after --",
            Arity = ArgumentArity.OneOrMore,
        };

        var command = new Command("run", "Run an unmodified CUDA program on a leased device, through the libcuda shim")
        {
            scheduler, token, transport, verbose, program,
        };
        foreach (var option in ask.All)
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            var shim = ShimPaths.Find();
            if (shim is null)
            {
                await Console.Error.WriteLineAsync($"error: the libcuda shim ({ShimPaths.FileName}) is not built: run `{ShimPaths.BuildCommand}` first (or set GPUPOOL_SHIM to its path).");
                return 1;
            }

            var argv = parse.GetValue(program)!;
            using var client = CliPaths.Client(parse.GetValue(scheduler), tokenOption: parse.GetValue(token));
            await using var lease = await client.AllocateAsync(ask.Request(parse, client), cancellationToken);
            if (parse.GetValue(verbose))
            {
                await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"gpupool run: lease {lease.Id}: {Units.FormatBytes(lease.Record.MemoryBytes)}, share {lease.Record.ComputeShare} on {lease.Record.BrokerId} device {lease.Record.DeviceIndex}, tenant {lease.Record.Tenant}, class {lease.Record.PriorityClass}, ttl {lease.Record.TtlSeconds} s"));
            }

            var folder = Directory.CreateTempSubdirectory("gpupool-run-");
            try
            {
                var tokenFile = Path.Combine(folder.FullName, "token");
                WriteToken(tokenFile, lease.Token);
                File.CreateSymbolicLink(Path.Combine(folder.FullName, "libcuda.so.1"), shim);
                File.CreateSymbolicLink(Path.Combine(folder.FullName, "libcuda.so"), shim);

                var start = new ProcessStartInfo(argv[0]) { UseShellExecute = false };
                foreach (var arg in argv.Skip(1))
                {
                    start.ArgumentList.Add(arg);
                }

                var env = start.Environment;
                env["LD_LIBRARY_PATH"] = env.TryGetValue("LD_LIBRARY_PATH", out var path) && !string.IsNullOrEmpty(path) ? $"{folder.FullName}:{path}" : folder.FullName;
                env["GPUPOOL_LEASE_ID"] = lease.Id;
                env["GPUPOOL_BROKER"] = lease.Record.BrokerEndpoint;
                env["GPUPOOL_BROKER_TCP"] = lease.Record.BrokerFastPathTcp;
                env["GPUPOOL_BROKER_UNIX"] = lease.Record.BrokerFastPathUnix;
                env["GPUPOOL_BROKER_HOST"] = lease.Record.BrokerHost;
                env["GPUPOOL_BROKER_ID"] = lease.Record.BrokerId;
                env["GPUPOOL_BROKER_MACHINE_ID"] = lease.Record.BrokerMachineId;
                env["GPUPOOL_TOKEN_FILE"] = tokenFile;
                env["GPUPOOL_SCHEDULER"] = client.SchedulerEndpoint;
                env["GPUPOOL_TRANSPORT"] = parse.GetValue(transport);
                env.Remove("GPUPOOL_TOKEN");
                if (client.Options.Authority is { } authority)
                {
                    // The program's shim checks the broker's certificate against the pool's CA, handed over as PEM text.
                    env["GPUPOOL_CA"] = authority.ExportCertificatePem();
                }
                if (parse.GetValue(verbose))
                {
                    env["GPUPOOL_SHIM_LOG"] = "1";
                }

                Process child;
                try
                {
                    child = Process.Start(start)!;
                }
                catch (Win32Exception ex)
                {
                    await Console.Error.WriteLineAsync($"error: cannot run {argv[0]}: {ex.Message}");
                    return 127;
                }

                using (child)
                {
                    return await SuperviseAsync(child, lease, tokenFile, cancellationToken);
                }
            }
            finally
            {
                try
                {
                    folder.Delete(recursive: true);
                }
                catch (IOException)
                {
                }
            }
        });
        return command;
    }

    /// <summary>Waits for the program, keeping its token file fresh; on Ctrl-C passes the interrupt on, then kills it if it lingers.</summary>
    private static async Task<int> SuperviseAsync(Process child, Lease lease, string tokenFile, CancellationToken cancellationToken)
    {
        using var stopRefresh = new CancellationTokenSource();
        var refresh = RefreshTokenAsync(lease, tokenFile, stopRefresh.Token);
        using var lost = lease.Lost.Register(() => Console.Error.WriteLine($"gpupool run: the lease was lost ({lease.LostReason?.Message}); the program's CUDA calls will fail"));
        try
        {
            await child.WaitForExitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            await InterruptAsync(child.Id);
            using var grace = new CancellationTokenSource(InterruptGrace);
            try
            {
                await child.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
                child.Kill(entireProcessTree: true);
                await child.WaitForExitAsync(CancellationToken.None);
            }
        }
        finally
        {
            await stopRefresh.CancelAsync();
            await refresh;
        }

        return child.ExitCode;
    }

    /// <summary>The lease's keepalives bring fresh tokens; the shim reads the file when it opens its session.</summary>
    private static async Task RefreshTokenAsync(Lease lease, string tokenFile, CancellationToken cancellationToken)
    {
        var written = lease.Token;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                var token = lease.Token;
                if (token != written)
                {
                    WriteToken(tokenFile, token);
                    written = token;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Replaces the token file in one step, readable by this user only.</summary>
    private static void WriteToken(string path, string token)
    {
        var temp = path + ".new";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var stream = new FileStream(temp, options))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(token);
        }

        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Passes SIGINT on (a terminal's Ctrl-C reaches the program itself; a signal sent to this process alone does not).</summary>
    private static async Task InterruptAsync(int pid)
    {
        try
        {
            using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-INT", pid.ToString(CultureInfo.InvariantCulture) }, UseShellExecute = false });
            if (kill is not null)
            {
                await kill.WaitForExitAsync(CancellationToken.None);
            }
        }
        catch (Win32Exception)
        {
            // No kill command: the program is killed after the grace period instead.
        }
    }
}
