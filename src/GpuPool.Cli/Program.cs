using System.CommandLine;
using GpuPool.Cli.Commands;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Spectre.Console;

var root = new RootCommand("gpupool: lend GPUs over the network, whole or in slices")
{
    DemoCommand.Create(),
    UpCommand.Create(),
    ServeCommands.Scheduler(),
    ServeCommands.Broker(),
    LeaseCommand.Create(),
    LsCommand.Create(),
    AdminCommands.Quota(),
    AdminCommands.Priority(),
    AdminCommands.Drain(),
    AdminCommands.Tenant(),
    RunCommand.Create(),
    CheckCommand.Create(),
    CaCommands.Create(),
};

// Tables and progress lines are written for people; when output goes to a file or a pipe, do not
// squeeze them into 80 columns.
if (Console.IsOutputRedirected)
{
    AnsiConsole.Profile.Width = 200;
}

var parse = root.Parse(args.Length == 0 ? ["--help"] : args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors)
    {
        AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(error.Message)}");
    }

    var name = parse.CommandResult.Command == root ? "gpupool" : $"gpupool {parse.CommandResult.Command.Name}";
    AnsiConsole.MarkupLine($"See '{Markup.Escape(name)} --help'.");
    return 2;
}

try
{
    return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(20), EnableDefaultExceptionHandler = false });
}
catch (GpuPoolException ex)
{
    // One sentence, no stack trace: what happened and, where we know, what to do.
    var hint = ex.Code == ErrorCode.Unavailable ? " Is `gpupool up` running, and is --scheduler right?" : "";
    AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}{hint}");
    return 1;
}
catch (ArgumentException ex)
{
    AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
    return 2;
}
catch (IOException ex)
{
    AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
    return 1;
}
