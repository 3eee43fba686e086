using System.Globalization;
using GpuPool.Client;
using GpuPool.Protocol;
using GpuPool.Protocol.V1;

namespace GpuPool.Shim.Internal;

/// <summary>
/// Where the shim's device lives, from environment variables (docs/shim.md). Two modes: a lease that someone
/// else holds (<c>gpupool run</c> sets GPUPOOL_LEASE_ID, GPUPOOL_BROKER and a token), or standalone, where the
/// shim leases for itself from GPUPOOL_SCHEDULER and releases at exit.
/// </summary>
internal sealed class ShimConfig
{
    public const string LeaseIdVar = "GPUPOOL_LEASE_ID";
    public const string BrokerVar = "GPUPOOL_BROKER";
    public const string BrokerTcpVar = "GPUPOOL_BROKER_TCP";
    public const string BrokerUnixVar = "GPUPOOL_BROKER_UNIX";
    public const string BrokerHostVar = "GPUPOOL_BROKER_HOST";
    public const string BrokerIdVar = "GPUPOOL_BROKER_ID";
    public const string BrokerMachineIdVar = "GPUPOOL_BROKER_MACHINE_ID";
    public const string TokenVar = "GPUPOOL_TOKEN";
    public const string TokenFileVar = "GPUPOOL_TOKEN_FILE";
    public const string TransportVar = "GPUPOOL_TRANSPORT";
    public const string SchedulerVar = "GPUPOOL_SCHEDULER";
    public const string TenantVar = "GPUPOOL_TENANT";
    public const string MemoryVar = "GPUPOOL_MEMORY";
    public const string ShareVar = "GPUPOOL_SHARE";
    public const string TimeoutVar = "GPUPOOL_SHIM_TIMEOUT";

    private ShimConfig()
    {
    }

    /// <summary>A lease held elsewhere: the record to open a session from. Null in standalone mode.</summary>
    public LeaseRecord? Lease { get; private init; }

    public string? TokenFile { get; private init; }

    public string? Token { get; private init; }

    /// <summary>The scheduler: where standalone mode leases (and, in held mode, only a name for the SDK's client).</summary>
    public string Scheduler { get; private init; } = "";

    public LeaseRequest? Request { get; private init; }

    /// <summary>
    /// The credential the client proves its tenant with: in standalone mode GPUPOOL_TENANT_TOKEN (a tenant token or the admin
    /// credential) and GPUPOOL_CA/GPUPOOL_CERT/GPUPOOL_KEY; in held mode only the pool's CA (the lease token opens the session).
    /// </summary>
    public GpuPoolClientOptions ClientOptions { get; private init; } = new();

    public SessionTransportKind Transport { get; private init; }

    /// <summary>How long a call waits for the broker before the shim gives the broker up for lost.</summary>
    public TimeSpan Timeout { get; private init; }

    /// <summary>Reads the environment; throws a CudaException(NoDevice) whose message says what to set.</summary>
    public static ShimConfig FromEnvironment()
    {
        var timeout = TimeSpan.FromSeconds(300);
        if (Get(TimeoutVar) is { } timeoutText)
        {
            if (!double.TryParse(timeoutText, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || seconds < 0 || seconds > 1e6)
            {
                throw Bad($"{TimeoutVar}='{timeoutText}' is not a number of seconds (0 = wait forever)");
            }

            timeout = seconds == 0 ? System.Threading.Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(seconds);
        }

        var transport = SessionTransportKind.Auto;
        if (Get(TransportVar) is { } transportText && !Enum.TryParse(transportText, ignoreCase: true, out transport))
        {
            throw Bad($"{TransportVar}='{transportText}' is not one of auto, tcp, unix, grpc");
        }

        if (Get(LeaseIdVar) is { } leaseId)
        {
            var broker = Get(BrokerVar) ?? throw Bad($"{LeaseIdVar} is set but {BrokerVar} (the broker's http:// endpoint) is not");
            var tokenFile = Get(TokenFileVar);
            var token = Get(TokenVar);
            if (tokenFile is null && token is null)
            {
                throw Bad($"{LeaseIdVar} is set but neither {TokenVar} nor {TokenFileVar} is");
            }

            return new ShimConfig
            {
                Lease = new LeaseRecord
                {
                    LeaseId = leaseId,
                    BrokerId = Get(BrokerIdVar) ?? Get(BrokerHostVar) ?? "broker",
                    BrokerEndpoint = broker,
                    BrokerFastPathTcp = Get(BrokerTcpVar) ?? "",
                    BrokerFastPathUnix = Get(BrokerUnixVar) ?? "",
                    BrokerHost = Get(BrokerHostVar) ?? "",
                    BrokerMachineId = Get(BrokerMachineIdVar) ?? "",
                },
                TokenFile = tokenFile,
                Token = token,

                // The SDK's client wants a scheduler address; in this mode it never calls it.
                Scheduler = Get(SchedulerVar) ?? broker,

                // No credential: the lease token opens the session. The pool's CA ($GPUPOOL_CA) checks a TLS broker.
                ClientOptions = new GpuPoolClientOptions { Authority = GpuPoolClientOptions.FromEnvironment(null).Authority },
                Transport = transport,
                Timeout = timeout,
            };
        }

        if (Get(SchedulerVar) is { } scheduler)
        {
            var memoryText = Get(MemoryVar) ?? "1GiB";
            if (!Units.TryParseBytes(memoryText, out var memory) || memory == 0)
            {
                throw Bad($"{MemoryVar}='{memoryText}' is not a size (write it like 512MiB or 2GiB)");
            }

            var shareText = Get(ShareVar) ?? "1000";
            if (!int.TryParse(shareText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var share) || share is < 1 or > 1000)
            {
                throw Bad($"{ShareVar}='{shareText}' is not a compute share from 1 to 1000 milli-GPU");
            }

            return new ShimConfig
            {
                Scheduler = scheduler,
                // No tenant named: the credential's.
                Request = new LeaseRequest { Tenant = Get(TenantVar) ?? "", MemoryBytes = memory, ComputeShare = share },
                ClientOptions = GpuPoolClientOptions.FromEnvironment(null),
                Transport = transport,
                Timeout = timeout,
            };
        }

        throw Bad($"no lease is configured: run the program with `gpupool run -- PROGRAM`, or set {SchedulerVar} (and {MemoryVar}, {ShareVar}, {TenantVar}) to lease one");
    }

    /// <summary>The session token: the token file's current content (the parent rewrites it at each renewal), else GPUPOOL_TOKEN.</summary>
    public string ReadToken()
    {
        if (TokenFile is not null)
        {
            try
            {
                var text = File.ReadAllText(TokenFile).Trim();
                if (text.Length > 0)
                {
                    return text;
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                if (Token is null)
                {
                    throw Bad($"cannot read the token file {TokenFile} ({ex.Message})");
                }
            }
        }

        return Token ?? throw Bad($"the token file {TokenFile} is empty");
    }

    private static string? Get(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v.Trim() : null;

    private static CudaException Bad(string message) => new(CuResult.NoDevice, message);
}
