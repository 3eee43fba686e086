using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>One entry a broker logged: its category, level, event, rendered message and structured fields.</summary>
public sealed record LoggedEntry(string Category, LogLevel Level, EventId EventId, string Message, IReadOnlyDictionary<string, object?> Fields)
{
    /// <summary>A structured field's value as text (invariant culture), or a failed test naming the entry.</summary>
    public string Field(string name)
    {
        Assert.True(Fields.TryGetValue(name, out var value) && value is not null, $"the log entry has no field {name}: {Message}");
        return Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)!;
    }
}

/// <summary>
/// A logger provider that keeps every entry at or above <see cref="MinimumLevel"/> in memory, with its structured
/// fields, for tests that check what a broker logged (for instance each launch it received).
/// </summary>
public sealed class BrokerLogRecorder(LogLevel minimumLevel) : ILoggerProvider
{
    private readonly ConcurrentQueue<LoggedEntry> _entries = new();

    public LogLevel MinimumLevel { get; } = minimumLevel;

    /// <summary>Every entry so far, oldest first.</summary>
    public IReadOnlyCollection<LoggedEntry> Entries => _entries;

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(BrokerLogRecorder recorder, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= recorder.MinimumLevel;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var fields = new Dictionary<string, object?>();
            if (state is IEnumerable<KeyValuePair<string, object?>> pairs)
            {
                foreach (var (name, value) in pairs)
                {
                    fields[name] = value;
                }
            }

            recorder._entries.Enqueue(new LoggedEntry(category, logLevel, eventId, formatter(state, exception), fields));
        }
    }
}
