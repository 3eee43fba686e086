using System.Collections.Concurrent;
using GpuPool.Broker;
using Microsoft.Extensions.Logging;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A pool whose broker waits only <see cref="HelloTimeout"/> for a fast-path hello, and whose log is
/// watched: an exception that escapes a connection handler (Kestrel logs it as an error and drops the
/// connection without an answer) fails <see cref="AssertBrokerHealthyAsync"/>.
/// </summary>
public sealed class FastPathPoolFixture : PoolFixture
{
    public static readonly TimeSpan HelloTimeout = TimeSpan.FromMilliseconds(500);

    private readonly ErrorRecorder _errors = new();
    private ILoggerFactory? _loggerFactory;

    /// <summary>Errors the broker and its Kestrel server logged, oldest first.</summary>
    public IReadOnlyCollection<string> LoggedErrors => _errors.Entries;

    protected override void Configure(BrokerOptions options) => options.FastPathHelloTimeout = HelloTimeout;

    protected override ILoggerFactory? BrokerLoggerFactory
        => _loggerFactory ??= LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Error).AddProvider(_errors));

    /// <summary>
    /// The postcondition of every robustness test: nothing escaped a connection handler, and another
    /// lease's session over TCP can still allocate, copy, launch and read back the right numbers.
    /// </summary>
    public async Task AssertBrokerHealthyAsync()
    {
        await AssertServesAnotherLeaseAsync(GpuPool.Client.SessionTransportKind.Tcp);
        Assert.True(_errors.Entries.IsEmpty, "the broker logged errors:\n" + string.Join("\n", _errors.Entries));
    }

    private sealed class ErrorRecorder : ILoggerProvider
    {
        public ConcurrentQueue<string> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class Logger(ErrorRecorder recorder, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel))
                {
                    recorder.Entries.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
                }
            }
        }
    }
}
