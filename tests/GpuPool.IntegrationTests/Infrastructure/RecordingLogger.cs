using Microsoft.Extensions.Logging;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>A logger that keeps every line it is given, with its level: what a client said, for a test to read.</summary>
internal sealed class RecordingLogger : ILogger
{
    private readonly List<(LogLevel Level, string Message)> _lines = [];

    public IReadOnlyList<(LogLevel Level, string Message)> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    /// <summary>The warnings (and worse) said so far.</summary>
    public IReadOnlyList<string> Warnings => [.. Lines.Where(l => l.Level >= LogLevel.Warning).Select(l => l.Message)];

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines)
        {
            _lines.Add((logLevel, formatter(state, exception)));
        }
    }
}
