using System.Net;
using System.Net.NetworkInformation;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using GpuPool.Coordination;
using GpuPool.Protocol.Security;

namespace GpuPool.Cli.Hosting;

/// <summary>
/// The pool's certificates as the CLI keeps them in a directory (by default the config dir's <c>pki</c>): ca.crt and
/// ca.key, a certificate and key per daemon (scheduler.crt, broker.crt), and client.crt for this user's commands.
/// </summary>
internal static class PoolPki
{
    public static readonly TimeSpan AuthorityLifetime = TimeSpan.FromDays(3650);

    public static readonly TimeSpan DefaultLifetime = TimeSpan.FromDays(365);

    public static string AuthorityCert(string dir) => Path.Combine(dir, "ca.crt");

    public static string AuthorityKey(string dir) => Path.Combine(dir, "ca.key");

    /// <summary>Makes a CA in <paramref name="dir"/>; an existing one is kept (returned) unless <paramref name="replace"/>.</summary>
    public static (X509Certificate2 Authority, bool Made) InitAuthority(string dir, string poolName, bool replace)
    {
        if (!replace && File.Exists(AuthorityCert(dir)) && File.Exists(AuthorityKey(dir)))
        {
            return (LoadAuthorityWithKey(dir), false);
        }

        var authority = PoolCertificates.CreateAuthority(poolName, AuthorityLifetime);
        PoolCertificates.Write(authority, AuthorityCert(dir), AuthorityKey(dir));
        return (authority, true);
    }

    public static X509Certificate2 LoadAuthorityWithKey(string dir)
    {
        if (!File.Exists(AuthorityKey(dir)))
        {
            throw new ArgumentException($"there is no CA key at {AuthorityKey(dir)}: make the pool's CA with `gpupool ca init`, or issue on the host that holds ca.key (--pki DIR)");
        }

        return PoolCertificates.Load(AuthorityCert(dir), AuthorityKey(dir));
    }

    /// <summary>Issues a certificate for <paramref name="identity"/> and writes it to <paramref name="certPath"/> and its .key.</summary>
    public static X509Certificate2 Issue(X509Certificate2 authority, PoolIdentity identity, IEnumerable<string> hosts, string certPath, TimeSpan lifetime)
    {
        var issued = PoolCertificates.Issue(authority, identity, hosts, lifetime);
        PoolCertificates.Write(issued, certPath, Path.ChangeExtension(certPath, ".key"));
        return issued;
    }

    /// <summary>
    /// The names and addresses a server on this machine is dialled at: localhost and the loopback addresses, the host
    /// name, every address of every interface that is up, and the advertised host when one is given.
    /// </summary>
    public static IReadOnlyList<string> LocalHosts(string? advertise = null)
    {
        var hosts = new List<string> { "localhost", "127.0.0.1", "::1", Dns.GetHostName() };
        try
        {
            foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
            {
                if (nic.OperationalStatus is OperationalStatus.Down)
                {
                    continue;
                }

                foreach (var address in nic.GetIPProperties().UnicastAddresses)
                {
                    if (address.Address.IsIPv6LinkLocal)
                    {
                        continue;
                    }

                    hosts.Add(new IPAddress(address.Address.GetAddressBytes()).ToString());
                }
            }
        }
        catch (NetworkInformationException)
        {
        }

        if (!string.IsNullOrWhiteSpace(advertise))
        {
            hosts.Add(advertise.Trim());
        }

        return [.. hosts.Distinct(StringComparer.OrdinalIgnoreCase)];
    }

    /// <summary>
    /// TLS for a pool on this machine (<c>gpupool up</c>): the CA in <paramref name="dir"/> (made on first use), fresh
    /// scheduler and broker certificates for this machine's names and addresses, and an admin client certificate for
    /// this user's commands (made when missing or not of this CA).
    /// </summary>
    public static (PoolTls Scheduler, PoolTls Broker) ForLocalPool(string dir, string? advertise)
    {
        var (authority, _) = InitAuthority(dir, Dns.GetHostName(), replace: false);
        var hosts = LocalHosts(advertise);
        var scheduler = Issue(authority, new PoolIdentity("scheduler", PoolRole.Scheduler), hosts, Path.Combine(dir, "scheduler.crt"), DefaultLifetime);
        var broker = Issue(authority, new PoolIdentity("local-broker", PoolRole.Broker), hosts, Path.Combine(dir, "broker.crt"), DefaultLifetime);
        var clientPath = Path.Combine(dir, "client.crt");
        var keep = false;
        if (File.Exists(clientPath))
        {
            try
            {
                keep = PoolCertificates.Verify(PoolCertificates.Load(clientPath, Path.ChangeExtension(clientPath, ".key")), authority, server: false, out _);
            }
            catch (ArgumentException)
            {
            }
        }

        if (!keep)
        {
            Issue(authority, new PoolIdentity(Environment.UserName is { Length: > 0 } user ? user : "admin", PoolRole.Admin), [], clientPath, DefaultLifetime);
        }

        var publicAuthority = X509CertificateLoader.LoadCertificate(authority.RawData);
        return (new PoolTls(publicAuthority, scheduler), new PoolTls(publicAuthority, broker));
    }

    /// <summary>
    /// A daemon's TLS from its options: null with --insecure; else the CA (--ca, default DIR/ca.crt) and its own
    /// certificate (--tls-cert, default DIR/ROLE.crt) with its key (--tls-key, default the certificate's path with .key).
    /// Missing files are an ArgumentException saying what to make or pass.
    /// </summary>
    public static PoolTls? ForDaemon(bool insecure, string? ca, string? cert, string? key, string role)
    {
        if (insecure)
        {
            return null;
        }

        var dir = CliPaths.PkiDir;
        ca ??= AuthorityCert(dir);
        cert ??= Path.Combine(dir, $"{role}.crt");
        key ??= Path.ChangeExtension(cert, ".key");
        foreach (var (path, what) in new[] { (ca, "the pool's CA certificate (--ca)"), (cert, $"this {role}'s certificate (--tls-cert)"), (key, $"this {role}'s key (--tls-key)") })
        {
            if (!File.Exists(path))
            {
                throw new ArgumentException($"TLS is on and {what} is not at {path}: make the pool's CA with `gpupool ca init` and this {role}'s certificate with `gpupool ca issue --{role} NAME --host HOST`, or run with --insecure on a network you trust");
            }
        }

        return new PoolTls(PoolCertificates.Load(ca), PoolCertificates.Load(cert, key));
    }

    /// <summary>
    /// A daemon's access to etcd. TLS (used for etcds:// only): etcd's certificate must chain to --store-ca (default:
    /// the pool's CA) and name the host dialled; the client certificate is --store-cert/--store-key (default: the
    /// daemon's own). Password authentication: --store-user with the password from --store-password-file, else
    /// <paramref name="passwordFromEnvironment"/>. A file that is missing or a user without a password is an
    /// ArgumentException saying what to pass.
    /// </summary>
    public static StoreSecurity ForStore(string? ca, string? cert, string? key, string? user, string? passwordFile, string? passwordFromEnvironment, PoolTls? daemonTls)
    {
        foreach (var (path, what) in new[] { (ca, "--store-ca"), (cert, "--store-cert"), (passwordFile, "--store-password-file") })
        {
            if (path is not null && !File.Exists(path))
            {
                throw new ArgumentException($"{what} names {path}, which does not exist");
            }
        }

        if (key is not null && cert is null)
        {
            throw new ArgumentException("--store-key was given without --store-cert");
        }

        var authority = ca is not null ? PoolCertificates.Load(ca) : daemonTls?.Authority;
        var client = cert is not null ? PoolCertificates.Load(cert, key ?? Path.ChangeExtension(cert, ".key")) : daemonTls?.Certificate;
        Func<string, SslClientAuthenticationOptions>? tls = authority is not null
            ? host => new PoolTls(authority, client).ClientOptions(host)
            : client is not null ? _ => new SslClientAuthenticationOptions { ClientCertificates = [client] } : null;

        string? password = null;
        if (user is not null)
        {
            password = passwordFile is not null ? File.ReadAllText(passwordFile).TrimEnd('\r', '\n') : passwordFromEnvironment;
            if (string.IsNullOrEmpty(password))
            {
                throw new ArgumentException($"--store-user {user} was given without a password: put it in $GPUPOOL_STORE_PASSWORD or a file named by --store-password-file");
            }
        }
        else if (passwordFile is not null)
        {
            throw new ArgumentException("--store-password-file was given without --store-user");
        }

        return new StoreSecurity(tls, user, password, TlsAsked: ca is not null || cert is not null);
    }
}
