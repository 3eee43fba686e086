using System.Security.Cryptography.X509Certificates;
using GpuPool.Client;
using GpuPool.Protocol.Security;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A pool CA in a directory of its own, as <c>gpupool ca init</c> makes it, and the certificates a test's daemons and
/// clients are given: files for child processes (<see cref="DaemonArgs"/>), objects for in-process hosts.
/// </summary>
internal sealed class TestPki : IDisposable
{
    private static readonly TimeSpan Lifetime = TimeSpan.FromDays(2);

    public TestPki()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("gpupool-pki-").FullName;
        Authority = PoolCertificates.CreateAuthority("test pool", Lifetime);
        PoolCertificates.Write(Authority, CaPath, Path.Combine(Directory, "ca.key"));
        PublicAuthority = X509CertificateLoader.LoadCertificate(Authority.RawData);
    }

    public string Directory { get; }

    /// <summary>The CA with its key (it issues).</summary>
    public X509Certificate2 Authority { get; }

    /// <summary>The CA's certificate alone, what every party trusts.</summary>
    public X509Certificate2 PublicAuthority { get; }

    public string CaPath => Path.Combine(Directory, "ca.crt");

    public X509Certificate2 Issue(string name, PoolRole role, params string[] hosts)
        => PoolCertificates.Issue(Authority, new PoolIdentity(name, role), hosts, Lifetime);

    /// <summary>TLS for an in-process scheduler or broker dialled at <paramref name="hosts"/> (default: loopback).</summary>
    public PoolTls Server(string name, PoolRole role, params string[] hosts)
        => new(PublicAuthority, Issue(name, role, hosts.Length == 0 ? ["127.0.0.1", "::1", "localhost"] : hosts));

    /// <summary>Writes a certificate and key for a child process; returns the certificate's path (the key is beside it, .key).</summary>
    public string WriteFiles(string name, PoolRole role, params string[] hosts)
    {
        var path = Path.Combine(Directory, $"{role.ToString().ToLowerInvariant()}-{name}.crt");
        PoolCertificates.Write(Issue(name, role, hosts), path, Path.ChangeExtension(path, ".key"));
        return path;
    }

    /// <summary>A daemon's TLS arguments: --ca, --tls-cert and --tls-key for a certificate issued now.</summary>
    public string[] DaemonArgs(string name, PoolRole role, params string[] hosts)
    {
        var cert = WriteFiles(name, role, hosts);
        return ["--ca", CaPath, "--tls-cert", cert, "--tls-key", Path.ChangeExtension(cert, ".key")];
    }

    /// <summary>The environment that gives a CLI client the pool's CA and a client certificate of <paramref name="role"/>.</summary>
    public Dictionary<string, string?> ClientEnvironment(string name, PoolRole role = PoolRole.Admin)
    {
        var cert = WriteFiles(name, role);
        return new() { ["GPUPOOL_CA"] = CaPath, ["GPUPOOL_CERT"] = cert, ["GPUPOOL_KEY"] = Path.ChangeExtension(cert, ".key") };
    }

    /// <summary>An SDK client's options: the pool's CA, and a client certificate of <paramref name="role"/> when a name is given.</summary>
    public GpuPoolClientOptions Client(string? name = null, PoolRole role = PoolRole.Admin, string? bearerToken = null) => new()
    {
        Authority = PublicAuthority,
        Certificate = name is null ? null : Issue(name, role),
        BearerToken = bearerToken,
    };

    /// <summary>The client options a CLI process with this config dir uses: its pki's CA and client certificate, else the admin token file.</summary>
    public static GpuPoolClientOptions FromConfigDir(string configDir)
    {
        var options = GpuPoolClientOptions.FromEnvironment(Path.Combine(configDir, "pki"));
        var tokenFile = Path.Combine(configDir, "admin-token");
        return options.Certificate is null && File.Exists(tokenFile) ? options with { BearerToken = File.ReadAllText(tokenFile).Trim() } : options;
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
