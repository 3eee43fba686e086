using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using GpuPool.Cli.Demo;
using GpuPool.Cli.Hosting;
using GpuPool.Client;
using GpuPool.Protocol;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary>
/// <c>gpupool demo</c>: start a pool on this machine (or use one with --scheduler), lease a slice over
/// gRPC, train a classifier on it, run batch inference, release, exit 0. Exits 1 if the loss did not fall.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var scheduler = new Option<string?>("--scheduler") { Description = "Use this running pool instead of starting one" };
        var quick = new Option<bool>("--quick") { Description = "A short run (fewer samples and epochs), as CI runs it" };
        var epochs = CliOptions.Ranged("--epochs", "Training epochs (default 30, or 8 with --quick)", 0, 0, 10_000);
        var samples = CliOptions.Ranged("--samples", "Training samples (default 3000, or 1500 with --quick)", 0, 0, 1_000_000);
        var seed = CliOptions.Ranged("--seed", "Seed of the data set and the initial weights", 7, 0, int.MaxValue);

        var command = new Command("demo", "Train and run a small classifier on a leased device, end to end") { scheduler, quick, epochs, samples, seed };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var isQuick = parse.GetValue(quick);
            var epochCount = parse.GetValue(epochs) is > 0 and var e ? e : isQuick ? 8 : 30;
            var sampleCount = parse.GetValue(samples) is > 0 and var s ? s : isQuick ? 1500 : 3000;
            return await RunAsync(parse.GetValue(scheduler), epochCount, sampleCount, parse.GetValue(seed), cancellationToken);
        });
        return command;
    }

    private static async Task<int> RunAsync(string? schedulerOption, int epochs, int samples, int seed, CancellationToken cancellationToken)
    {
        const int classes = 3;
        const int batch = 128;
        const float learningRate = 0.01f;
        int[] layers = [SpiralData.FeatureCount, 64, 64, classes];

        AnsiConsole.Write(new Rule("[bold]GpuPool demo[/]").LeftJustified());
        LocalPool? pool = null;
        DirectoryInfo? pki = null;
        string? demoToken = null;
        string endpoint;
        if (string.IsNullOrEmpty(schedulerOption))
        {
            // Its own throwaway admin credential: the demo's client acts as the admin for tenant "demo".
            // TLS as every pool has it, with a throwaway CA of its own.
            demoToken = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(16));
            pki = Directory.CreateTempSubdirectory("gpupool-demo-pki-");
            pool = await LocalPool.StartAsync(new LocalPoolOptions { SchedulerPort = 0, BrokerPort = 0, FastPathPort = 0, DeviceMemory = 2UL << 30, AdminToken = demoToken, PkiDir = pki.FullName }, null, cancellationToken);
            endpoint = pool.Scheduler.Endpoint;
            AnsiConsole.MarkupLine($"pool started on this machine: scheduler {endpoint}, broker {pool.Broker.Endpoint}");
            AnsiConsole.MarkupLine($"  {Markup.Escape(pool.BackendNote)}");
        }
        else
        {
            endpoint = schedulerOption;
            AnsiConsole.MarkupLine($"using the pool at {Markup.Escape(endpoint)}");
        }

        try
        {
            // Another pool: the credentials every command uses, and the tenant they name (an admin's: "demo").
            using var client = demoToken is null ? CliPaths.Client(endpoint) : new GpuPoolClient(endpoint, new GpuPoolClientOptions { BearerToken = demoToken, Authority = pool!.Tls?.Authority });
            var tenant = demoToken is null && CliPaths.TenantFor(client, null) != "default" ? "" : "demo";
            await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = tenant, MemoryBytes = 256UL << 20, ComputeShare = 500 }, cancellationToken);
            await using var session = await lease.OpenSessionAsync(cancellationToken);
            AnsiConsole.MarkupLine(
                $"leased {Markup.Escape(lease.Id)}: {Units.FormatBytes(lease.Record.MemoryBytes)}, share {lease.Record.ComputeShare} on device {lease.Record.DeviceIndex} " +
                $"({Markup.Escape(session.Info.DeviceName)}, {session.Info.Backend}) of broker {Markup.Escape(lease.Record.BrokerEndpoint)}, session over {session.Transport}");

            var train = SpiralData.Generate(samples, classes, seed);
            var test = SpiralData.Generate(Math.Max(300, samples / 5), classes, seed + 1);
            AnsiConsole.MarkupLine($"data: {train.Count} training and {test.Count} held-out samples of {classes} interleaved spirals; model: MLP {string.Join("-", layers)}, Adam, batch {batch}");

            await using var model = await MlpClassifier.CreateAsync(session, layers, batch, seed, cancellationToken);
            var random = new Random(seed);
            var losses = new List<double>();
            double accuracy = 0;
            var clock = Stopwatch.StartNew();
            await AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .StartAsync(async progress =>
                {
                    var task = progress.AddTask("training", maxValue: epochs);
                    for (var epoch = 1; epoch <= epochs; epoch++)
                    {
                        (var loss, accuracy) = await model.TrainEpochAsync(train.Shuffled(random), learningRate, cancellationToken);
                        losses.Add(loss);
                        task.Description = $"epoch {epoch}/{epochs}";
                        task.Increment(1);
                        AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture, $"epoch {epoch,3}  loss {loss:F4}  accuracy {accuracy:P1}"));
                    }
                });

            var predictions = await model.PredictAsync(test, cancellationToken);
            var correct = predictions.Zip(test.Labels).Count(p => p.First == p.Second);
            AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                $"trained in {clock.Elapsed.TotalSeconds:F1} s: loss {losses[0]:F4} -> {losses[^1]:F4}, final training accuracy {accuracy:P1}"));
            AnsiConsole.MarkupLine(string.Create(CultureInfo.InvariantCulture,
                $"batch inference on {test.Count} held-out samples: accuracy {correct / (double)test.Count:P1}"));

            await session.DisposeAsync();
            await lease.ReleaseAsync(cancellationToken);
            AnsiConsole.MarkupLine($"released {Markup.Escape(lease.Id)}");
            if (!(losses[^1] < losses[0]))
            {
                AnsiConsole.MarkupLine("[red]the loss did not fall[/]");
                return 1;
            }

            return 0;
        }
        finally
        {
            if (pool is not null)
            {
                await pool.DisposeAsync();
            }

            pki?.Delete(recursive: true);
        }
    }
}
