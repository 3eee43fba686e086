using System.CommandLine;
using System.Globalization;
using GpuPool.Cli.Hosting;
using GpuPool.Client;
using GpuPool.Client.Admin;
using GpuPool.Protocol;
using GpuPool.Protocol.V1;
using Spectre.Console;

namespace GpuPool.Cli.Commands;

/// <summary><c>gpupool quota|priority|drain|tenant</c>: what admins set. Changes carry the admin credential.</summary>
internal static class AdminCommands
{
    private static Option<string?> AdminToken() => new("--admin-token")
    {
        Description = "Admin credential (default: $GPUPOOL_ADMIN_TOKEN, else the one `gpupool up` keeps in the config dir)",
    };

    public static Command Quota()
    {
        var command = new Command("quota", "Set, show and remove per-tenant quotas");

        var tenant = new Argument<string>("tenant") { Description = "The tenant" };
        var milli = new Option<uint?>("--milli-gpus") { Description = "Most compute, in milli-GPU, the tenant's leases may hold together (1000 = one device; default unlimited)" };
        var memory = new Option<string?>("--memory") { Description = "Most device memory the tenant's leases may hold together, e.g. 64GiB (default unlimited)" };
        var leases = new Option<uint?>("--leases") { Description = "Most leases at once (default unlimited)" };
        var classes = new Option<string?>("--classes") { Description = "Priority classes the tenant may use, comma-separated (default all)" };
        var borrow = new Option<bool>("--borrow") { Description = "Past the quota, take idle capacity as preemptible leases" };
        var (scheduler, token) = (CliOptions.Scheduler(), AdminToken());
        var set = new Command("set", "Set a tenant's quota (replacing the one it has)") { tenant, milli, memory, leases, classes, borrow, scheduler, token };
        set.SetAction(async (parse, cancellationToken) =>
        {
            var memoryText = parse.GetValue(memory);
            ulong memoryBytes = ulong.MaxValue;
            if (memoryText is not null && !(Units.TryParseBytes(memoryText, out memoryBytes) && memoryBytes > 0))
            {
                throw new ArgumentException($"--memory '{memoryText}' is not a size: write it like 64GiB or 512MiB");
            }

            var quota = new Quota
            {
                Tenant = parse.GetValue(tenant)!,
                MaxMilliGpus = parse.GetValue(milli) ?? uint.MaxValue,
                MaxMemoryBytes = memoryBytes,
                MaxLeases = parse.GetValue(leases) ?? uint.MaxValue,
                AllowBorrowing = parse.GetValue(borrow),
            };
            quota.AllowedPriorityClasses.AddRange((parse.GetValue(classes) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            var (client, admin) = Connect(parse.GetValue(scheduler), parse.GetValue(token));
            using (client)
            {
                WriteQuotas([await admin.SetQuotaAsync(quota, cancellationToken)]);
            }

            return 0;
        });

        var getTenant = new Argument<string>("tenant") { Description = "The tenant" };
        var getScheduler = CliOptions.Scheduler();
        var get = new Command("get", "Show a tenant's quota") { getTenant, getScheduler };
        get.SetAction(async (parse, cancellationToken) =>
        {
            var (client, admin) = Connect(parse.GetValue(getScheduler), null);
            using (client)
            {
                WriteQuotas([await admin.GetQuotaAsync(parse.GetValue(getTenant)!, cancellationToken)]);
            }

            return 0;
        });

        var lsScheduler = CliOptions.Scheduler();
        var ls = new Command("ls", "List every quota") { lsScheduler };
        ls.SetAction(async (parse, cancellationToken) =>
        {
            var (client, admin) = Connect(parse.GetValue(lsScheduler), null);
            using (client)
            {
                var quotas = await admin.ListQuotasAsync(cancellationToken);
                if (quotas.Count == 0)
                {
                    AnsiConsole.MarkupLine("no quotas are set");
                }
                else
                {
                    WriteQuotas(quotas);
                }
            }

            return 0;
        });

        var rmTenant = new Argument<string>("tenant") { Description = "The tenant" };
        var (rmScheduler, rmToken) = (CliOptions.Scheduler(), AdminToken());
        var rm = new Command("rm", "Remove a tenant's quota (its leases run on; new requests are refused)") { rmTenant, rmScheduler, rmToken };
        rm.SetAction(async (parse, cancellationToken) =>
        {
            var (client, admin) = Connect(parse.GetValue(rmScheduler), parse.GetValue(rmToken));
            using (client)
            {
                var name = parse.GetValue(rmTenant)!;
                AnsiConsole.MarkupLine(await admin.DeleteQuotaAsync(name, cancellationToken) ? $"removed the quota of {Markup.Escape(name)}" : $"{Markup.Escape(name)} had no quota");
            }

            return 0;
        });

        command.Add(set);
        command.Add(get);
        command.Add(ls);
        command.Add(rm);
        return command;
    }

    public static Command Priority()
    {
        var command = new Command("priority", "Define, list and remove priority classes");
        var name = new Argument<string>("name") { Description = "The class name" };
        var value = new Option<int>("--value") { Description = "Higher wins; a request may preempt preemptible leases of a lower value", Required = true };
        var preemptible = new Option<bool>("--preemptible") { Description = "Leases of this class may be evicted by higher classes" };
        var minRuntime = CliOptions.OptionalDuration("--min-runtime", "How long a lease of this class runs before it may be preempted or reclaimed at all (default: no minimum; at most the scheduler's longest lease TTL)");
        var (scheduler, token) = (CliOptions.Scheduler(), AdminToken());
        var set = new Command("set", "Define or change a priority class") { name, value, preemptible, minRuntime, scheduler, token };
        set.SetAction(async (parse, cancellationToken) =>
        {
            // Whole seconds, rounded up; a value past what the field holds is left for the scheduler to refuse.
            var seconds = parse.GetValue(minRuntime) is { } runtime ? (uint)Math.Min(uint.MaxValue, Math.Ceiling(runtime.TotalSeconds)) : 0;
            var (client, admin) = Connect(parse.GetValue(scheduler), parse.GetValue(token));
            using (client)
            {
                WriteClasses([await admin.SetPriorityClassAsync(new PriorityClass { Name = parse.GetValue(name)!, Value = parse.GetValue(value), Preemptible = parse.GetValue(preemptible), MinRuntimeSeconds = seconds }, cancellationToken)]);
            }

            return 0;
        });

        var lsScheduler = CliOptions.Scheduler();
        var ls = new Command("ls", "List the priority classes, highest first") { lsScheduler };
        ls.SetAction(async (parse, cancellationToken) =>
        {
            var (client, admin) = Connect(parse.GetValue(lsScheduler), null);
            using (client)
            {
                WriteClasses(await admin.ListPriorityClassesAsync(cancellationToken));
            }

            return 0;
        });

        var rmName = new Argument<string>("name") { Description = "The class name" };
        var (rmScheduler, rmToken) = (CliOptions.Scheduler(), AdminToken());
        var rm = new Command("rm", "Remove a priority class (leases of it run on)") { rmName, rmScheduler, rmToken };
        rm.SetAction(async (parse, cancellationToken) =>
        {
            var (client, admin) = Connect(parse.GetValue(rmScheduler), parse.GetValue(rmToken));
            using (client)
            {
                var n = parse.GetValue(rmName)!;
                AnsiConsole.MarkupLine(await admin.DeletePriorityClassAsync(n, cancellationToken) ? $"removed priority class {Markup.Escape(n)}" : $"there was no priority class {Markup.Escape(n)}");
            }

            return 0;
        });

        command.Add(set);
        command.Add(ls);
        command.Add(rm);
        return command;
    }

    public static Command Drain()
    {
        var target = new Argument<string>("host") { Description = "Broker id or host name" };
        var undo = new Option<bool>("--undo") { Description = "Return the broker to service" };
        var (scheduler, token) = (CliOptions.Scheduler(), AdminToken());
        var command = new Command("drain", "Stop placing new leases on a broker; its leases run on until they end") { target, undo, scheduler, token };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var (client, admin) = Connect(parse.GetValue(scheduler), parse.GetValue(token));
            using (client)
            {
                var reply = await admin.DrainAsync(parse.GetValue(target)!, parse.GetValue(undo), cancellationToken);
                var ids = string.Join(", ", reply.BrokerIds);
                AnsiConsole.MarkupLine(Markup.Escape(parse.GetValue(undo)
                    ? $"returned {ids} to service"
                    : $"drained {ids}: no new leases go there; {reply.LeasesRemaining} lease{(reply.LeasesRemaining == 1 ? "" : "s")} still running"));
            }

            return 0;
        });
        return command;
    }

    public static Command Tenant()
    {
        var command = new Command("tenant", "Issue, list and revoke the tokens tenants prove who they are with");

        var name = new Argument<string>("name") { Description = "The tenant" };
        var admin = new Option<bool>("--admin") { Description = "Issue a token that acts as an admin (for any tenant), named after NAME in the audit log" };
        var (scheduler, token) = (CliOptions.Scheduler(), AdminToken());
        var add = new Command("add", "Issue a token for a tenant and print it (only the token, on one line: TOKEN=$(gpupool tenant add NAME)); it is shown this once") { name, admin, scheduler, token };
        add.SetAction(async (parse, cancellationToken) =>
        {
            var (client, poolAdmin) = Connect(parse.GetValue(scheduler), parse.GetValue(token));
            using (client)
            {
                var reply = await poolAdmin.AddTenantTokenAsync(parse.GetValue(name)!, parse.GetValue(admin), cancellationToken);

                // Plain stdout, not the console's markup: the token must come out whole for a script.
                Console.Out.WriteLine(reply.Token);
                await Console.Error.WriteLineAsync($"issued token {reply.Record.TokenId} for {(reply.Record.Admin ? "admin" : "tenant")} {reply.Record.Tenant}; keep it secret (revoke it with gpupool tenant revoke {reply.Record.Tenant} --token {reply.Record.TokenId})");
            }

            return 0;
        });

        var revokeName = new Argument<string>("name") { Description = "The tenant" };
        var id = new Option<string?>("--token") { Description = "The id of the token to revoke (see gpupool tenant ls); default: every token of the tenant" };
        var (revokeScheduler, revokeToken) = (CliOptions.Scheduler(), AdminToken());
        var revoke = new Command("revoke", "Revoke one of a tenant's tokens, or all of them; every scheduler replica refuses them within about a second") { revokeName, id, revokeScheduler, revokeToken };
        revoke.SetAction(async (parse, cancellationToken) =>
        {
            var (client, poolAdmin) = Connect(parse.GetValue(revokeScheduler), parse.GetValue(revokeToken));
            using (client)
            {
                var tenant = parse.GetValue(revokeName)!;
                var ids = await poolAdmin.RevokeTenantTokensAsync(tenant, parse.GetValue(id), cancellationToken);
                AnsiConsole.MarkupLine(Markup.Escape(ids.Count == 0 ? $"{tenant} had no tokens" : $"revoked {string.Join(", ", ids)} of {tenant}"));
            }

            return 0;
        });

        var (lsScheduler, lsToken) = (CliOptions.Scheduler(), AdminToken());
        var ls = new Command("ls", "List tenants with tokens or quotas, and their tokens' ids, roles and issue times (never the tokens)") { lsScheduler, lsToken };
        ls.SetAction(async (parse, cancellationToken) =>
        {
            var (client, poolAdmin) = Connect(parse.GetValue(lsScheduler), parse.GetValue(lsToken));
            using (client)
            {
                var tenants = await poolAdmin.ListTenantsAsync(cancellationToken);
                if (tenants.Count == 0)
                {
                    AnsiConsole.MarkupLine("no tenant has a token or a quota");
                    return 0;
                }

                var table = new Table().Title("tenants").AddColumns("tenant", "token", "role", "issued", "issued by", "quota");
                foreach (var t in tenants)
                {
                    if (t.Tokens.Count == 0)
                    {
                        table.AddRow(Markup.Escape(t.Tenant), "-", "-", "-", "-", t.HasQuota ? "yes" : "no");
                    }

                    foreach (var k in t.Tokens)
                    {
                        table.AddRow(
                            Markup.Escape(t.Tenant),
                            Markup.Escape(k.TokenId),
                            k.Admin ? "admin" : "tenant",
                            k.Issued is null ? "-" : k.Issued.ToDateTimeOffset().ToString("u", CultureInfo.InvariantCulture),
                            Markup.Escape(k.IssuedBy),
                            t.HasQuota ? "yes" : "no");
                    }
                }

                AnsiConsole.Write(table);
            }

            return 0;
        });

        command.Add(add);
        command.Add(revoke);
        command.Add(ls);
        return command;
    }

    private static (GpuPoolClient Client, PoolAdmin Admin) Connect(string? scheduler, string? token)
    {
        var client = CliPaths.Client(scheduler);
        return (client, new PoolAdmin(client, CliPaths.ResolveAdminToken(token)));
    }

    internal static string Limit(ulong value, Func<ulong, string> format) => value >= uint.MaxValue && value is uint.MaxValue or ulong.MaxValue ? "unlimited" : format(value);

    private static void WriteQuotas(IEnumerable<Quota> quotas)
    {
        var table = new Table().Title("quotas").AddColumns("tenant", "milli-GPU", "memory", "leases", "classes", "borrow");
        foreach (var q in quotas)
        {
            table.AddRow(
                Markup.Escape(q.Tenant),
                Limit(q.MaxMilliGpus, v => v.ToString(CultureInfo.InvariantCulture)),
                Limit(q.MaxMemoryBytes, Units.FormatBytes),
                Limit(q.MaxLeases, v => v.ToString(CultureInfo.InvariantCulture)),
                q.AllowedPriorityClasses.Count == 0 ? "all" : Markup.Escape(string.Join(",", q.AllowedPriorityClasses)),
                q.AllowBorrowing ? "yes" : "no");
        }

        AnsiConsole.Write(table);
    }

    private static void WriteClasses(IEnumerable<PriorityClass> classes)
    {
        var table = new Table().Title("priority classes").AddColumns("name", "value", "preemptible", "min runtime");
        foreach (var c in classes)
        {
            table.AddRow(Markup.Escape(c.Name), c.Value.ToString(CultureInfo.InvariantCulture), c.Preemptible ? "yes" : "no", c.MinRuntimeSeconds == 0 ? "-" : FormatSeconds(c.MinRuntimeSeconds));
        }

        AnsiConsole.Write(table);
    }

    /// <summary>Seconds as the duration options take them: 90 is 1m30s, 7200 is 2h.</summary>
    internal static string FormatSeconds(uint seconds)
    {
        var (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        var text = (h > 0 ? $"{h}h" : "") + (m > 0 ? $"{m}m" : "") + (s > 0 ? $"{s}s" : "");
        return text.Length == 0 ? "0s" : text;
    }
}
