using Microsoft.Extensions.Logging;

namespace GpuPool.Client;

/// <summary>The client's log messages, source-generated: what it fell back to, said once per broker and address.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Message = "Broker {BrokerId}: cannot reach its fast path at {Address} ({Reason}); the session runs over {Fallback} instead")]
    public static partial void FastPathFallback(ILogger logger, LogLevel level, string brokerId, string address, string reason, string fallback);

    [LoggerMessage(EventId = 2, Message = "Broker {BrokerId}: a data connection to {Address} could not be opened ({Reason}); large copies of this session go over {Connections} connection(s) instead of {Wanted}")]
    public static partial void StripeFallback(ILogger logger, LogLevel level, string brokerId, string address, string reason, int connections, int wanted);
}
