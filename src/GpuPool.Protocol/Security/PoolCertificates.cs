using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace GpuPool.Protocol.Security;

/// <summary>
/// What a certificate of the pool's CA lets its holder be: a tenant, an admin, a scheduler replica, a broker, or a
/// member of the pool's etcd (a server the daemons dial; the scheduler takes it for nobody).
/// </summary>
public enum PoolRole
{
    Tenant,
    Admin,
    Scheduler,
    Broker,
    Store,
}

/// <summary>Who a credential says its holder is: a name (the tenant, the admin, the broker id) and a role.</summary>
public sealed record PoolIdentity(string Name, PoolRole Role)
{
    /// <summary>The organisation a certificate's subject carries for each role: "gpupool tenant", "gpupool admin", ….</summary>
    public static string Organization(PoolRole role) => "gpupool " + role.ToString().ToLowerInvariant();

    /// <summary>The identity a pool certificate's subject names (CN = name, O = "gpupool ROLE"); null when it names none.</summary>
    public static PoolIdentity? FromCertificate(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        string? organization = null;
        foreach (var part in certificate.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (part.GetSingleElementType().Value == "2.5.4.10")
            {
                organization = part.GetSingleElementValue();
            }
        }

        foreach (var role in Enum.GetValues<PoolRole>())
        {
            if (organization == Organization(role) && !string.IsNullOrEmpty(name))
            {
                return new PoolIdentity(name, role);
            }
        }

        return null;
    }

    /// <summary>A role whose certificate serves (and names the hosts it is dialled at): a scheduler, a broker, an etcd member.</summary>
    public bool IsServer => Role is PoolRole.Scheduler or PoolRole.Broker or PoolRole.Store;

    public override string ToString() => $"{Role.ToString().ToLowerInvariant()} {Name}";
}

/// <summary>
/// The pool's certificate authority and the certificates it issues: an ECDSA P-256 CA made once per pool
/// (<c>gpupool ca init</c>), and leaf certificates for schedulers and brokers (server and client use, with the host
/// names and addresses they are dialled at) and for tenants and admins (client use), each naming its holder and role
/// in its subject. Every file is PEM; keys are written readable by their owner only.
/// </summary>
public static class PoolCertificates
{
    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>A new self-signed CA certificate (with its private key) for the pool called <paramref name="poolName"/>.</summary>
    public static X509Certificate2 CreateAuthority(string poolName, TimeSpan lifetime)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(poolName);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddCommonName($"{poolName} CA");
        subject.AddOrganizationName("gpupool ca");
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var now = DateTimeOffset.UtcNow;
        return request.CreateSelfSigned(now.AddMinutes(-5), now + lifetime);
    }

    /// <summary>
    /// A certificate (with its private key) for <paramref name="identity"/>, signed by <paramref name="authority"/> (which
    /// must hold its private key). Schedulers and brokers get server and client use and <paramref name="hosts"/> (names
    /// and addresses) as subject alternative names; tenants and admins get client use only.
    /// </summary>
    public static X509Certificate2 Issue(X509Certificate2 authority, PoolIdentity identity, IEnumerable<string> hosts, TimeSpan lifetime, DateTimeOffset? notBefore = null)
    {
        ArgumentNullException.ThrowIfNull(authority);
        ArgumentNullException.ThrowIfNull(identity);
        CheckName(identity.Name);
        using var caKey = authority.GetECDsaPrivateKey() ?? throw new ArgumentException("the CA certificate given has no private key: issuing needs the CA's key (ca.key)", nameof(authority));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddCommonName(identity.Name);
        subject.AddOrganizationName(PoolIdentity.Organization(identity.Role));
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
        var server = identity.IsServer;
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, critical: true));
        var usages = new OidCollection { new Oid(ClientAuthOid) };
        if (server)
        {
            usages.Add(new Oid(ServerAuthOid));
        }

        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, critical: false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        var names = new SubjectAlternativeNameBuilder();
        var any = false;
        foreach (var host in server ? hosts : [])
        {
            var trimmed = host.Trim().Trim('[', ']');
            if (trimmed.Length == 0)
            {
                continue;
            }

            if (IPAddress.TryParse(trimmed, out var address))
            {
                names.AddIpAddress(address);
            }
            else
            {
                names.AddDnsName(trimmed);
            }

            any = true;
        }

        if (any)
        {
            request.CertificateExtensions.Add(names.Build());
        }

        var start = notBefore ?? DateTimeOffset.UtcNow.AddMinutes(-5);
        var end = start + lifetime;
        if (end > authority.NotAfter)
        {
            end = authority.NotAfter;
        }

        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var issued = request.Create(authority.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), start, end, serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>
    /// Checks that <paramref name="certificate"/> was issued by <paramref name="authority"/>, is within its validity now,
    /// and may be used as a server (<paramref name="server"/>) or a client; false with one sentence saying why otherwise.
    /// </summary>
    public static bool Verify(X509Certificate2 certificate, X509Certificate2 authority, bool server, out string error)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        ArgumentNullException.ThrowIfNull(authority);
        var now = DateTime.Now;
        if (now < certificate.NotBefore || now > certificate.NotAfter)
        {
            error = $"the certificate of {Describe(certificate)} is valid from {certificate.NotBefore.ToUniversalTime():u} to {certificate.NotAfter.ToUniversalTime():u}, not now";
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid(server ? ServerAuthOid : ClientAuthOid));
        if (!chain.Build(certificate))
        {
            var statuses = chain.ChainStatus.Select(s => s.Status).Distinct().ToArray();
            error = statuses.Contains(X509ChainStatusFlags.NotValidForUsage)
                ? $"the certificate of {Describe(certificate)} is not for {(server ? "a server" : "a client")}"
                : $"the certificate of {Describe(certificate)} is not issued by this pool's CA ({authority.GetNameInfo(X509NameType.SimpleName, false)}): {string.Join(", ", statuses)}";
            return false;
        }

        var root = chain.ChainElements[^1].Certificate;
        if (!root.RawDataMemory.Span.SequenceEqual(authority.RawDataMemory.Span))
        {
            error = $"the certificate of {Describe(certificate)} is not issued by this pool's CA";
            return false;
        }

        error = "";
        return true;
    }

    /// <summary>"tenant team-a (CN=team-a, O=gpupool tenant)": how messages name a certificate's holder.</summary>
    public static string Describe(X509Certificate2 certificate)
        => PoolIdentity.FromCertificate(certificate) is { } identity ? $"{identity} ({certificate.Subject})" : certificate.Subject;

    /// <summary>Writes a certificate (and, when <paramref name="keyPath"/> is given, its private key, owner-only) as PEM.</summary>
    public static void Write(X509Certificate2 certificate, string certificatePath, string? keyPath)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        WriteFile(certificatePath, certificate.ExportCertificatePem() + "\n", secret: false);
        if (keyPath is not null)
        {
            using var key = certificate.GetECDsaPrivateKey() ?? throw new ArgumentException("the certificate has no private key to write", nameof(certificate));
            WriteFile(keyPath, key.ExportPkcs8PrivateKeyPem() + "\n", secret: true);
        }
    }

    /// <summary>Loads a PEM certificate, with its PEM private key when <paramref name="keyPath"/> is given; a sentence naming the file when it cannot.</summary>
    public static X509Certificate2 Load(string certificatePath, string? keyPath = null)
    {
        try
        {
            return keyPath is null ? X509Certificate2.CreateFromPem(File.ReadAllText(certificatePath)) : X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            throw new ArgumentException(keyPath is null
                ? $"cannot read the certificate {certificatePath}: {ex.Message}"
                : $"cannot read the certificate {certificatePath} with its key {keyPath}: {ex.Message}", ex);
        }
    }

    /// <summary>Loads a certificate from PEM text (the CA a process is handed in an environment variable).</summary>
    public static X509Certificate2 FromPem(string pem) => X509Certificate2.CreateFromPem(pem);

    private static void CheckName(string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 128 || name.Any(c => char.IsControl(c) || c is ',' or '=' or '+' or '"' or '\\' or '<' or '>' or ';'))
        {
            throw new ArgumentException($"'{name}' cannot name a certificate's holder: use 1..128 characters without control characters or , = + \" \\ < > ;");
        }
    }

    private static void WriteFile(string path, string text, bool secret)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        File.Delete(temp);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = secret ? UnixFileMode.UserRead | UnixFileMode.UserWrite : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
        }

        using (var stream = new FileStream(temp, options))
        {
            stream.Write(Encoding.ASCII.GetBytes(text));
        }

        File.Move(temp, path, overwrite: true);
    }
}
