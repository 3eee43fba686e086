using System.Diagnostics;
using System.Net;
using Google.Protobuf;
using GpuPool.Perf.Anchors.Proto;
using GpuPool.Perf.Harness;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace GpuPool.Perf.Anchors;

/// <summary>
/// What plain grpc-dotnet does with default settings: a client-streaming upload of 256 KiB messages
/// and a bidirectional-stream ping of 16 bytes, against Kestrel (HTTP/2 cleartext) in this process.
/// </summary>
public sealed class GrpcAnchor : IBenchmark
{
    private const int ChunkBytes = 256 << 10;
    private const int PingBytes = 16;

    public string Name => "plain gRPC anchor";

    public async Task<IReadOnlyList<Measurement>> RunAsync(BenchmarkOptions options, CancellationToken cancellationToken)
    {
        await using var app = await StartServerAsync(cancellationToken).ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        using var channel = GrpcChannel.ForAddress(address);
        var client = new Anchor.AnchorClient(channel);

        var results = new List<Measurement>();
        results.Add(await MeasureUploadAsync(client, options, cancellationToken).ConfigureAwait(false));
        results.AddRange(await MeasurePingAsync(client, options, cancellationToken).ConfigureAwait(false));
        await app.StopAsync(cancellationToken).ConfigureAwait(false);
        return results;
    }

    private static async Task<Measurement> MeasureUploadAsync(Anchor.AnchorClient client, BenchmarkOptions options, CancellationToken cancellationToken)
    {
        var totalBytes = options.Quick ? 256L << 20 : 1L << 30;
        var payload = new byte[ChunkBytes];
        Random.Shared.NextBytes(payload);
        var chunk = new Chunk { Data = UnsafeByteOperations.UnsafeWrap(payload) };

        await UploadAsync(client, chunk, 64L << 20, cancellationToken).ConfigureAwait(false); // warm-up
        var runs = new List<double>();
        for (var i = 0; i < options.BandwidthRepetitions; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await UploadAsync(client, chunk, totalBytes, cancellationToken).ConfigureAwait(false);
            runs.Add(Stats.GigabytesPerSecond(totalBytes, Stopwatch.GetTimestamp() - start));
        }

        var runList = string.Join(", ", runs.Select(r => r.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)));
        return new Measurement(
            Groups.Bandwidth,
            AnchorNames.GrpcUpload,
            Stats.Median(runs),
            Units.GBps,
            SizeBytes: ChunkBytes,
            Anchor: AnchorNames.Iperf1M,
            Note: $"median of {runs.Count} uploads of {Stats.FormatSize(totalBytes)} after a 64 MiB warm-up: {runList}");
    }

    private static async Task UploadAsync(Anchor.AnchorClient client, Chunk chunk, long totalBytes, CancellationToken cancellationToken)
    {
        var messages = totalBytes / ChunkBytes;
        using var call = client.Upload(cancellationToken: cancellationToken);
        for (var i = 0; i < messages; i++)
        {
            await call.RequestStream.WriteAsync(chunk, cancellationToken).ConfigureAwait(false);
        }

        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        var ack = await call.ResponseAsync.ConfigureAwait(false);
        if (ack.Bytes != messages * ChunkBytes)
        {
            throw new InvalidOperationException($"The server counted {ack.Bytes} bytes of {messages * ChunkBytes} sent.");
        }
    }

    private static async Task<Measurement[]> MeasurePingAsync(Anchor.AnchorClient client, BenchmarkOptions options, CancellationToken cancellationToken)
    {
        var data = new byte[PingBytes];
        Random.Shared.NextBytes(data);
        var message = new Chunk { Data = ByteString.CopyFrom(data) };
        var ticks = new long[options.LatencyRoundTrips];

        using var call = client.Ping(cancellationToken: cancellationToken);
        for (var i = 0; i < options.LatencyWarmupRoundTrips; i++)
        {
            await PingOnceAsync(call, message, cancellationToken).ConfigureAwait(false);
        }

        for (var i = 0; i < ticks.Length; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await PingOnceAsync(call, message, cancellationToken).ConfigureAwait(false);
            ticks[i] = Stopwatch.GetTimestamp() - start;
        }

        await call.RequestStream.CompleteAsync().ConfigureAwait(false);
        while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
        {
            // Drain to the end of the call.
        }

        var note = $"{ticks.Length:N0} round trips on one stream after {options.LatencyWarmupRoundTrips:N0} warm-up";
        return
        [
            new Measurement(Groups.Latency, AnchorNames.GrpcPingP50, Stats.PercentileMicroseconds(ticks, 50), Units.Microseconds, PingBytes, AnchorNames.SocketEchoP50, Note: note),
            new Measurement(Groups.Latency, AnchorNames.GrpcPingP99, Stats.PercentileMicroseconds(ticks, 99), Units.Microseconds, PingBytes, AnchorNames.SocketEchoP99, Note: note),
        ];
    }

    private static async Task PingOnceAsync(AsyncDuplexStreamingCall<Chunk, Chunk> call, Chunk message, CancellationToken cancellationToken)
    {
        await call.RequestStream.WriteAsync(message, cancellationToken).ConfigureAwait(false);
        if (!await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
        {
            throw new InvalidOperationException("The ping stream ended early.");
        }
    }

    /// <summary>Kestrel on 127.0.0.1, a free port, HTTP/2 cleartext; gRPC and Kestrel limits left at their defaults.</summary>
    private static async Task<WebApplication> StartServerAsync(CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        var app = builder.Build();
        app.MapGrpcService<AnchorService>();
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        return app;
    }

    /// <summary>The anchor's server side: counts uploaded bytes, echoes pings.</summary>
    private sealed class AnchorService : Anchor.AnchorBase
    {
        public override async Task<Ack> Upload(IAsyncStreamReader<Chunk> requestStream, ServerCallContext context)
        {
            long bytes = 0;
            long messages = 0;
            await foreach (var chunk in requestStream.ReadAllAsync(context.CancellationToken).ConfigureAwait(false))
            {
                bytes += chunk.Data.Length;
                messages++;
            }

            return new Ack { Bytes = bytes, Messages = messages };
        }

        public override async Task Ping(IAsyncStreamReader<Chunk> requestStream, IServerStreamWriter<Chunk> responseStream, ServerCallContext context)
        {
            await foreach (var chunk in requestStream.ReadAllAsync(context.CancellationToken).ConfigureAwait(false))
            {
                await responseStream.WriteAsync(chunk, context.CancellationToken).ConfigureAwait(false);
            }
        }
    }
}
