using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace GpuPool.Protocol.Security;

/// <summary>
/// TLS with the pool's CA, for one process: the CA it trusts and, for a server or a client that proves who it is, its
/// own certificate with its key. A peer is trusted when its certificate chains to the pool's CA (not to the system's
/// roots), is valid now, is for its use (server or client), and — for a server — names the host it was dialled at.
/// </summary>
public sealed class PoolTls
{
    private string _lastRejection = "";

    public PoolTls(X509Certificate2 authority, X509Certificate2? certificate = null)
    {
        ArgumentNullException.ThrowIfNull(authority);
        if (certificate is not null && !certificate.HasPrivateKey)
        {
            throw new ArgumentException($"the certificate {certificate.Subject} comes without its private key", nameof(certificate));
        }

        Authority = authority;
        Certificate = certificate;
    }

    /// <summary>The pool's CA certificate (public part only is needed).</summary>
    public X509Certificate2 Authority { get; }

    /// <summary>This process's own certificate with its key; null for a client that proves itself otherwise (a token) or not at all.</summary>
    public X509Certificate2? Certificate { get; }

    /// <summary>Why the last server certificate was refused, for the error the refused connection ends in ("" when none was).</summary>
    public string LastRejection => Volatile.Read(ref _lastRejection);

    /// <summary>Options for a client's handshake with a server dialled at <paramref name="targetHost"/>.</summary>
    public SslClientAuthenticationOptions ClientOptions(string targetHost) => new()
    {
        TargetHost = targetHost.Trim('[', ']'),
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        ClientCertificates = Certificate is null ? null : [Certificate],
        RemoteCertificateValidationCallback = ValidateServer,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        CipherSuitesPolicy = Suites,
    };

    /// <summary>
    /// AES-128-GCM first (OpenSSL's own order puts AES-256 first, which costs bulk copies more for no gain against
    /// what a pool protects), then AES-256-GCM and ChaCha20; the TLS 1.2 suites are the ECDSA ones our certificates use.
    /// Null where the platform does not take a policy (it then uses its defaults).
    /// </summary>
    private static readonly CipherSuitesPolicy? Suites = OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()
        ? new CipherSuitesPolicy(
        [
            TlsCipherSuite.TLS_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_AES_256_GCM_SHA384,
            TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TlsCipherSuite.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ])
        : null;

    /// <summary>
    /// Options for a server's handshake. A client certificate is asked for but not required (tenants may prove
    /// themselves with a token instead); one that does not verify is not refused here but later, by the caller that
    /// needs the identity, with a sentence saying why (<see cref="TryIdentify"/>).
    /// </summary>
    public SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificate = Certificate ?? throw new InvalidOperationException("a TLS server needs its own certificate"),
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        // Asked for (so a client that has one sends it), not required: the callback takes a connection without one.
        ClientCertificateRequired = true,
        RemoteCertificateValidationCallback = static (_, _, _, _) => true,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        CipherSuitesPolicy = Suites,
    };

    /// <summary>The check a client makes of the server's certificate (a RemoteCertificateValidationCallback).</summary>
    public bool ValidateServer(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        string? why = null;
        if (certificate is null)
        {
            why = "the server sent no certificate";
        }
        else
        {
            var leaf = certificate as X509Certificate2 ?? new X509Certificate2(certificate);
            if (!PoolCertificates.Verify(leaf, Authority, server: true, out var error))
            {
                why = error;
            }
            else if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
            {
                why = $"the server's certificate ({leaf.Subject}) does not name the host it was dialled at ({(sender as SslStream)?.TargetHostName ?? "?"}): issue it with that host (gpupool ca issue --host)";
            }
        }

        if (why is not null)
        {
            Volatile.Write(ref _lastRejection, why);
            return false;
        }

        return true;
    }

    /// <summary>
    /// The identity a client certificate proves: null with no error when there is no certificate, null with a sentence
    /// when there is one this pool does not accept (another CA, expired, not for a client, no role in its subject).
    /// </summary>
    public PoolIdentity? TryIdentify(X509Certificate2? clientCertificate, out string? error)
    {
        error = null;
        if (clientCertificate is null)
        {
            return null;
        }

        if (!PoolCertificates.Verify(clientCertificate, Authority, server: false, out var why))
        {
            error = why;
            return null;
        }

        var identity = PoolIdentity.FromCertificate(clientCertificate);
        if (identity is null)
        {
            error = $"the client certificate {clientCertificate.Subject} names no tenant or role (its subject needs O=gpupool tenant, admin, scheduler or broker)";
        }

        return identity;
    }
}
