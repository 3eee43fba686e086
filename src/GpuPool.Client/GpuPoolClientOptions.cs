using System.Security.Cryptography.X509Certificates;
using GpuPool.Protocol.Security;
using Microsoft.Extensions.Logging;

namespace GpuPool.Client;

/// <summary>
/// How a client reaches a pool: the CA it trusts for https:// endpoints and TLS fast paths, and the credential that
/// proves its tenant (a client certificate of the pool's CA, or a bearer token the scheduler signed for the tenant, or
/// the pool's admin credential).
/// </summary>
public sealed record GpuPoolClientOptions
{
    /// <summary>The pool's CA certificate; every server this client dials over TLS must hold a certificate it issued. Null: plaintext (http://) only.</summary>
    public X509Certificate2? Authority { get; init; }

    /// <summary>A client certificate of the pool's CA with its key (its subject names the tenant or the admin); null for none.</summary>
    public X509Certificate2? Certificate { get; init; }

    /// <summary>A bearer token (a tenant's token from <c>gpupool tenant add</c>, or the admin credential) sent with every scheduler call; null for none.</summary>
    public string? BearerToken { get; init; }

    /// <summary>Where the client says what it fell back to (see <see cref="GpuPoolClient"/>); null: warnings to stderr.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>The TLS settings these options make; null when no CA is given.</summary>
    internal PoolTls? Tls => Authority is null ? null : new PoolTls(Authority, Certificate);

    /// <summary>
    /// Reads a client's credentials the way every program of the pool does: the CA from <c>$GPUPOOL_CA</c> (a PEM file,
    /// or the PEM text itself), else <paramref name="directory"/>/ca.crt; the certificate from <c>$GPUPOOL_CERT</c> and
    /// <c>$GPUPOOL_KEY</c>, else <paramref name="directory"/>/client.crt and client.key; the token from
    /// <c>$GPUPOOL_TENANT_TOKEN</c>. Missing files are no credential, not an error; a file that is there but unreadable is an
    /// ArgumentException naming it.
    /// </summary>
    public static GpuPoolClientOptions FromEnvironment(string? directory, ILogger? logger = null)
    {
        var ca = Environment.GetEnvironmentVariable("GPUPOOL_CA");
        X509Certificate2? authority = null;
        if (!string.IsNullOrWhiteSpace(ca))
        {
            authority = ca.Contains("-----BEGIN", StringComparison.Ordinal) ? PoolCertificates.FromPem(ca) : PoolCertificates.Load(ca);
        }
        else if (directory is not null && File.Exists(Path.Combine(directory, "ca.crt")))
        {
            authority = PoolCertificates.Load(Path.Combine(directory, "ca.crt"));
        }

        X509Certificate2? certificate = null;
        var certPath = Environment.GetEnvironmentVariable("GPUPOOL_CERT");
        var keyPath = Environment.GetEnvironmentVariable("GPUPOOL_KEY");
        if (!string.IsNullOrWhiteSpace(certPath))
        {
            certificate = PoolCertificates.Load(certPath, string.IsNullOrWhiteSpace(keyPath) ? Path.ChangeExtension(certPath, ".key") : keyPath);
        }
        else if (directory is not null && File.Exists(Path.Combine(directory, "client.crt")))
        {
            certificate = PoolCertificates.Load(Path.Combine(directory, "client.crt"), Path.Combine(directory, "client.key"));
        }

        var token = Environment.GetEnvironmentVariable("GPUPOOL_TENANT_TOKEN");
        return new GpuPoolClientOptions
        {
            Authority = authority,
            Certificate = certificate,
            BearerToken = string.IsNullOrWhiteSpace(token) ? null : token.Trim(),
            Logger = logger,
        };
    }
}
