using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace GpuPool.Hosting;

/// <summary>
/// Starts a Kestrel server that speaks gRPC over HTTP/2 — with TLS and the pool's CA when given, else cleartext — on
/// one address and port (0 = any free port) and reports the port it actually bound; the caller says which host others
/// dial it on. A connection with no call in flight is closed after the idle timeout (one that sends nothing at all
/// too), and a TLS handshake must finish within it. Shared by
/// the broker and the scheduler (linked source, as grpc-dotnet does with src/Shared).
/// </summary>
internal static class GrpcServerHost
{
    public static async Task<(WebApplication App, int Port)> StartAsync(
        string address,
        int port,
        int maxMessageBytes,
        ILoggerFactory? loggerFactory,
        Action<IServiceCollection> configureServices,
        Action<WebApplication> mapServices,
        CancellationToken cancellationToken,
        GpuPool.Protocol.Security.PoolTls? tls = null,
        TimeSpan? idleTimeout = null)
    {
        var idle = idleTimeout ?? TimeSpan.FromSeconds(30);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (loggerFactory is not null)
        {
            builder.Services.AddSingleton(loggerFactory);
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(GpuPool.Protocol.Hosts.AdvertisedAddress.ParseListen(address), port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (tls is not null)
                {
                    // Before the handshake: a client that speaks plaintext to this TLS port is logged with its address
                    // (the handshake that follows fails, and the client is told it cannot connect).
                    var refusals = (loggerFactory ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).CreateLogger("GpuPool.Hosting.Tls");
                    var handshake = idle < TimeSpan.FromSeconds(10) ? idle : TimeSpan.FromSeconds(10);
                    listen.Use(next => async connection =>
                    {
                        System.IO.Pipelines.ReadResult read;
                        using (var first = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed))
                        {
                            // A connection that sends nothing at all is closed after the handshake's timeout.
                            first.CancelAfter(handshake);
                            try
                            {
                                read = await connection.Transport.Input.ReadAsync(first.Token).ConfigureAwait(false);
                            }
                            catch (Exception ex) when (ex is OperationCanceledException or IOException)
                            {
                                connection.Abort();
                                return;
                            }
                        }

                        if (!read.Buffer.IsEmpty && read.Buffer.FirstSpan[0] != 0x16)
                        {
                            refusals.LogWarning("Connection from {Peer} refused: it sent plaintext to a TLS port (dial https:// with the pool's CA)", connection.RemoteEndPoint);
                        }

                        connection.Transport.Input.AdvanceTo(read.Buffer.Start);
                        await next(connection).ConfigureAwait(false);
                    });
                    listen.UseHttps(new HttpsConnectionAdapterOptions
                    {
                        ServerCertificate = tls.Certificate ?? throw new ArgumentException("a TLS server needs its own certificate"),
                        SslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13,

                        // Asked for, not required: a tenant may prove itself with a token instead. The caller that needs
                        // the identity checks the certificate against the pool's CA and says why it refuses one.
                        ClientCertificateMode = ClientCertificateMode.AllowCertificate,
                        ClientCertificateValidation = static (_, _, _) => true,
                        CheckCertificateRevocation = false,
                        HandshakeTimeout = handshake,
                    });
                }
            });
            kestrel.Limits.KeepAliveTimeout = idle;
            kestrel.Limits.RequestHeadersTimeout = idle < TimeSpan.FromSeconds(30) ? idle : TimeSpan.FromSeconds(30);
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.InitialConnectionWindowSize = 8 << 20;
            kestrel.Limits.Http2.InitialStreamWindowSize = 4 << 20;
        });
        builder.Services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = maxMessageBytes;
            grpc.MaxSendMessageSize = maxMessageBytes;
            grpc.EnableDetailedErrors = false;
        });
        configureServices(builder.Services);

        var app = builder.Build();
        mapServices(app);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app, new Uri(bound).Port);
    }
}
