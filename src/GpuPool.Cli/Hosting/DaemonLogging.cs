using System.CommandLine;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace GpuPool.Cli.Hosting;

/// <summary>
/// The daemons' log (up, scheduler, broker): warnings and errors always, one line each on stderr (stdout keeps what the
/// command prints for people and scripts), the lifecycle too with --verbose; text, or one JSON object a line with
/// --log-format json.
/// </summary>
internal static class DaemonLogging
{
    public static Option<bool> Verbose() => new("--verbose") { Description = "Log leases and sessions as they come and go (warnings and errors are always logged)" };

    public static Option<string> Format()
    {
        var format = new Option<string>("--log-format") { Description = "text (one line each) or json (one object a line), on stderr", DefaultValueFactory = _ => "text" };
        format.AcceptOnlyFromAmong("text", "json");
        return format;
    }

    public static ILoggerFactory Create(bool verbose, string format) => LoggerFactory.Create(b =>
    {
        b.SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning);
        if (format == "json")
        {
            b.AddJsonConsole(o => o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ");
        }
        else
        {
            b.AddSimpleConsole(o => (o.SingleLine, o.TimestampFormat, o.UseUtcTimestamp) = (true, "yyyy-MM-ddTHH:mm:ss.fffZ ", true));
        }

        b.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
    });
}
