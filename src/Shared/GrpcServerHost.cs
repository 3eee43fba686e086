using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace GpuPool.Hosting;

/// <summary>
/// Starts a Kestrel server that speaks gRPC over cleartext HTTP/2 on one address and port (0 = any free
/// port) and reports the port it actually bound; the caller says which host others dial it on. Shared by
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
        CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (loggerFactory is not null)
        {
            builder.Services.AddSingleton(loggerFactory);
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(GpuPool.Protocol.Hosts.AdvertisedAddress.ParseListen(address), port, listen => listen.Protocols = HttpProtocols.Http2);
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
