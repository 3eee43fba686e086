using System.CommandLine;
using System.Net;
using GpuPool.Cli.Hosting;
using GpuPool.Protocol.Security;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary><c>gpupool ca init</c> and <c>gpupool ca issue</c>: the pool's certificate authority and the certificates it issues.</summary>
internal static class CaCommands
{
    public static Command Create()
    {
        var command = new Command("ca", "The pool's certificate authority: make it, and issue certificates for schedulers, brokers, tenants and admins");
        command.Subcommands.Add(Init());
        command.Subcommands.Add(Issue());
        return command;
    }

    private static Option<string> Pki() => new("--pki")
    {
        Description = "Directory of the pool's certificates (ca.crt, ca.key, ...)",
        DefaultValueFactory = _ => CliPaths.PkiDir,
    };

    private static Command Init()
    {
        var pki = Pki();
        var name = new Option<string>("--name") { Description = "The pool's name, in the CA's subject", DefaultValueFactory = _ => Dns.GetHostName() };
        var force = new Option<bool>("--force") { Description = "Replace an existing CA (every certificate it issued stops being trusted)" };
        var command = new Command("init", "Make the pool's CA (ca.crt, and ca.key readable by its owner only); an existing one is kept") { pki, name, force };
        command.SetAction(parse =>
        {
            var dir = parse.GetValue(pki)!;
            var (authority, made) = PoolPki.InitAuthority(dir, parse.GetValue(name)!, parse.GetValue(force));
            AnsiConsole.MarkupLine(Markup.Escape(made
                ? $"made the pool's CA {authority.Subject} in {dir} (ca.crt for every host, ca.key stays here)"
                : $"kept the pool's CA {authority.Subject} in {dir} (--force replaces it)"));
            return 0;
        });
        return command;
    }

    private static Command Issue()
    {
        var pki = Pki();
        var tenant = new Option<string?>("--tenant") { Description = "A client certificate for this tenant" };
        var admin = new Option<string?>("--admin") { Description = "A client certificate with the admin role, for this person" };
        var scheduler = new Option<string?>("--scheduler") { Description = "A scheduler replica's certificate (server and client use)" };
        var broker = new Option<string?>("--broker") { Description = "A broker's certificate (server and client use), for this broker id" };
        var store = new Option<string?>("--store") { Description = "An etcd member's certificate (server and client use: its --cert-file and --peer-cert-file), for this member name" };
        var hosts = new Option<string[]>("--host") { Description = "A host name or address the scheduler, broker or etcd member is dialled at (repeat; default: this machine's names and addresses)", AllowMultipleArgumentsPerToken = true };
        var output = new Option<string?>("--out") { Description = "Where to write the certificate (its key goes beside it, .key); default: DIR/ROLE-NAME.crt" };
        var days = CliOptions.Ranged("--days", "How many days the certificate is valid", 365, 1, 3650);
        var command = new Command("issue", "Issue a certificate and key signed by the pool's CA") { pki, tenant, admin, scheduler, broker, store, hosts, output, days };
        command.SetAction(parse =>
        {
            var chosen = new (string? Name, PoolRole Role)[]
            {
                (parse.GetValue(tenant), PoolRole.Tenant),
                (parse.GetValue(admin), PoolRole.Admin),
                (parse.GetValue(scheduler), PoolRole.Scheduler),
                (parse.GetValue(broker), PoolRole.Broker),
                (parse.GetValue(store), PoolRole.Store),
            }.Where(c => c.Name is not null).ToArray();
            if (chosen.Length != 1)
            {
                throw new ArgumentException("say whose certificate to issue with exactly one of --tenant, --admin, --scheduler, --broker or --store");
            }

            var identity = new PoolIdentity(chosen[0].Name!, chosen[0].Role);
            var server = identity.IsServer;
            var given = parse.GetValue(hosts) ?? [];
            if (!server && given.Length > 0)
            {
                throw new ArgumentException("--host names a server's addresses: a tenant's or an admin's certificate has none");
            }

            var dir = parse.GetValue(pki)!;
            var authority = PoolPki.LoadAuthorityWithKey(dir);
            var path = parse.GetValue(output) ?? Path.Combine(dir, $"{identity.Role.ToString().ToLowerInvariant()}-{identity.Name}.crt");
            IReadOnlyList<string> names = server ? (given.Length > 0 ? given : PoolPki.LocalHosts()) : [];
            var issued = PoolPki.Issue(authority, identity, names, path, TimeSpan.FromDays(parse.GetValue(days)));
            AnsiConsole.MarkupLine(Markup.Escape($"issued {identity} ({issued.Subject}), valid until {issued.NotAfter.ToUniversalTime():u}"));
            AnsiConsole.MarkupLine(Markup.Escape($"certificate {path}"));
            AnsiConsole.MarkupLine(Markup.Escape($"key {Path.ChangeExtension(path, ".key")} (readable by its owner only)"));
            if (server)
            {
                AnsiConsole.MarkupLine(Markup.Escape($"hosts {string.Join(", ", names)}"));
            }

            return 0;
        });
        return command;
    }
}
