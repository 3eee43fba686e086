using System.Collections.Concurrent;

namespace GpuPool.Shim.Internal;

/// <summary>
/// The shim's only output: lines on stderr prefixed "gpupool shim:". A program's own output stays its own, so
/// by default the shim says something only when it cannot work at all (no lease configured, the broker lost).
/// GPUPOOL_SHIM_LOG=1 adds every failed call with the broker's sentence, and every entry point looked up that
/// the shim does not serve (once per name).
/// </summary>
internal static class ShimLog
{
    private static readonly ConcurrentDictionary<string, byte> Said = new(StringComparer.Ordinal);

    public static bool Verbose { get; } = Environment.GetEnvironmentVariable("GPUPOOL_SHIM_LOG") is { Length: > 0 } v && v != "0";

    /// <summary>Always written: the shim cannot serve the program.</summary>
    public static void Always(string message) => Write(message);

    /// <summary>Written once per <paramref name="key"/>, whatever the log setting.</summary>
    public static void OnceAlways(string key, string message)
    {
        if (Said.TryAdd(key, 0))
        {
            Write(message);
        }
    }

    /// <summary>Written once per <paramref name="key"/> when GPUPOOL_SHIM_LOG is set.</summary>
    public static void Once(string key, string message)
    {
        if (Verbose && Said.TryAdd(key, 0))
        {
            Write(message);
        }
    }

    public static void Failure(string call, CuResult result, Exception ex)
    {
        if (Verbose)
        {
            Write($"{call}: {CuResultText.Name(result)}: {ex.Message}");
        }
        else if (result is CuResult.Unknown && ex is not CudaException)
        {
            // A bug of ours: say so even when not asked, once per call.
            OnceAlways("bug:" + call, $"{call}: internal error ({ex.GetType().Name}: {ex.Message}); set GPUPOOL_SHIM_LOG=1 for every failure");
        }
    }

    /// <summary>The SDK's log: its warnings (a fast path it could not reach, and what it fell back to) always, one line each.</summary>
    public static Microsoft.Extensions.Logging.ILogger Sdk { get; } = new SdkLogger();

    private sealed class SdkLogger : Microsoft.Extensions.Logging.ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel)
            => logLevel is >= Microsoft.Extensions.Logging.LogLevel.Warning and < Microsoft.Extensions.Logging.LogLevel.None;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                Write(formatter(state, exception));
            }
        }
    }

    private static void Write(string message)
    {
        try
        {
            Console.Error.WriteLine("gpupool shim: " + message);
        }
        catch (IOException)
        {
            // stderr closed: nothing to say it on.
        }
    }
}
