using Microsoft.Extensions.Logging;

namespace GpuPool.Client.Internal;

/// <summary>
/// The client's log when its owner gives none: warnings and errors, one line each on stderr, prefixed "gpupool:", so
/// that a program falling back to a slower transport is told even if it set up no logging.
/// </summary>
internal sealed class StderrLogger : ILogger
{
    public static readonly StderrLogger Instance = new();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel is >= LogLevel.Warning and < LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
        {
            return;
        }

        try
        {
            Console.Error.WriteLine("gpupool: " + formatter(state, exception));
        }
        catch (IOException)
        {
            // stderr closed: nothing to say it on.
        }
    }
}
