//! Where each MCP client keeps its server configuration, per platform and scope.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A client application whose MCP configuration the scanner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Client {
    /// Claude Desktop.
    ClaudeDesktop,
    /// Claude Code (CLI).
    ClaudeCode,
    /// Cursor.
    Cursor,
    /// Visual Studio Code.
    VsCode,
    /// Windsurf.
    Windsurf,
    /// Zed.
    Zed,
    /// Cline (a VS Code extension).
    Cline,
    /// Gemini CLI.
    GeminiCli,
    /// OpenAI Codex CLI.
    Codex,
}

impl Client {
    /// Every supported client.
    pub const ALL: [Client; 9] = [
        Client::ClaudeDesktop,
        Client::ClaudeCode,
        Client::Cursor,
        Client::VsCode,
        Client::Windsurf,
        Client::Zed,
        Client::Cline,
        Client::GeminiCli,
        Client::Codex,
    ];

    /// The name used on the command line (`--client NAME`) and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Client::ClaudeDesktop => "claude-desktop",
            Client::ClaudeCode => "claude-code",
            Client::Cursor => "cursor",
            Client::VsCode => "vscode",
            Client::Windsurf => "windsurf",
            Client::Zed => "zed",
            Client::Cline => "cline",
            Client::GeminiCli => "gemini-cli",
            Client::Codex => "codex",
        }
    }

    /// The client named `name` (as [`Client::name`] spells it).
    pub fn from_name(name: &str) -> Option<Client> {
        Client::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl Serialize for Client {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How servers are laid out in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// JSON(C) with a top-level `mcpServers` object (Claude Desktop, Cursor, Windsurf, Cline,
    /// Gemini CLI, Claude Code project files).
    McpServers,
    /// Claude Code's user file: top-level `mcpServers` plus `projects.<dir>.mcpServers`.
    ClaudeCodeUser,
    /// VS Code `mcp.json`: top-level `servers` (JSONC).
    VsCodeServers,
    /// VS Code user `settings.json`: `mcp.servers` (JSONC, older releases).
    VsCodeSettings,
    /// Zed `settings.json`: `context_servers` (JSONC).
    ZedContextServers,
    /// Codex `config.toml`: `[mcp_servers.<name>]` tables.
    CodexToml,
}

/// Whose configuration a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The user's own configuration.
    User,
    /// A project's configuration (checked into a repository).
    Project,
    /// Machine-wide (administrator-managed) configuration.
    System,
}

/// The operating systems whose layouts are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and other XDG systems.
    Linux,
    /// macOS.
    MacOs,
    /// Windows.
    Windows,
}

/// What locating configuration files needs to know about the machine; tests build one
/// around a fake home directory.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The operating system.
    pub os: Os,
    /// The user's home directory.
    pub home: PathBuf,
    /// `XDG_CONFIG_HOME` (Linux), when set.
    pub xdg_config_home: Option<PathBuf>,
    /// `%APPDATA%` (Windows), when set.
    pub appdata: Option<PathBuf>,
    /// `%ProgramData%` (Windows), when set.
    pub program_data: Option<PathBuf>,
    /// Prefix for machine-wide paths such as `/etc` (tests point it into a temporary tree).
    pub root: PathBuf,
}

impl Platform {
    /// This machine, from the process environment.
    pub fn current(env: impl Fn(&str) -> Option<String>) -> Option<Platform> {
        let os = if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        };
        let home = env("HOME").or_else(|| env("USERPROFILE"))?;
        Some(Platform {
            os,
            home: PathBuf::from(home),
            xdg_config_home: env("XDG_CONFIG_HOME").map(PathBuf::from),
            appdata: env("APPDATA").map(PathBuf::from),
            program_data: env("ProgramData").map(PathBuf::from),
            root: PathBuf::from("/"),
        })
    }

    /// The per-user application configuration directory (`~/.config`, `~/Library/Application
    /// Support`, `%APPDATA%`).
    fn app_config(&self) -> PathBuf {
        match self.os {
            Os::Linux => self
                .xdg_config_home
                .clone()
                .unwrap_or_else(|| self.home.join(".config")),
            Os::MacOs => self.home.join("Library/Application Support"),
            Os::Windows => self
                .appdata
                .clone()
                .unwrap_or_else(|| self.home.join("AppData/Roaming")),
        }
    }

    fn system(&self, unix: &str, windows: &str) -> PathBuf {
        match self.os {
            Os::Windows => self
                .program_data
                .clone()
                .unwrap_or_else(|| self.root.join("ProgramData"))
                .join(windows),
            _ => self.root.join(unix.trim_start_matches('/')),
        }
    }
}

/// One place a client may keep MCP servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigLocation {
    /// The client.
    pub client: Client,
    /// Whose file it is.
    pub scope: Scope,
    /// How servers are laid out in it.
    pub format: Format,
    /// The file.
    pub path: PathBuf,
}

/// Every location the supported clients use on `platform`, user and system scopes first, then
/// project scope under `project` (the current directory, usually) when given.
pub fn locations(platform: &Platform, project: Option<&Path>) -> Vec<ConfigLocation> {
    let home = &platform.home;
    let app = platform.app_config();
    let mut out = Vec::new();
    let mut add = |client, scope, format, path: PathBuf| {
        out.push(ConfigLocation {
            client,
            scope,
            format,
            path,
        });
    };
    use Client::*;
    use Format::*;
    use Scope::*;
    add(
        ClaudeDesktop,
        User,
        McpServers,
        app.join("Claude/claude_desktop_config.json"),
    );
    add(ClaudeCode, User, ClaudeCodeUser, home.join(".claude.json"));
    add(
        ClaudeCode,
        System,
        McpServers,
        match platform.os {
            Os::MacOs => platform
                .root
                .join("Library/Application Support/ClaudeCode/managed-mcp.json"),
            _ => platform.system(
                "/etc/claude-code/managed-mcp.json",
                "ClaudeCode/managed-mcp.json",
            ),
        },
    );
    add(Cursor, User, McpServers, home.join(".cursor/mcp.json"));
    let code_user = app.join(match platform.os {
        Os::Windows | Os::MacOs | Os::Linux => "Code/User",
    });
    add(VsCode, User, VsCodeServers, code_user.join("mcp.json"));
    add(
        VsCode,
        User,
        VsCodeSettings,
        code_user.join("settings.json"),
    );
    add(
        Windsurf,
        User,
        McpServers,
        home.join(".codeium/windsurf/mcp_config.json"),
    );
    add(
        Zed,
        User,
        ZedContextServers,
        match platform.os {
            Os::Windows => app.join("Zed/settings.json"),
            // Zed uses ~/.config/zed on macOS too.
            _ => platform
                .xdg_config_home
                .clone()
                .unwrap_or_else(|| home.join(".config"))
                .join("zed/settings.json"),
        },
    );
    add(
        Cline,
        User,
        McpServers,
        code_user.join("globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json"),
    );
    add(
        GeminiCli,
        User,
        McpServers,
        home.join(".gemini/settings.json"),
    );
    add(
        GeminiCli,
        System,
        McpServers,
        match platform.os {
            Os::MacOs => platform
                .root
                .join("Library/Application Support/GeminiCli/settings.json"),
            _ => platform.system("/etc/gemini-cli/settings.json", "gemini-cli/settings.json"),
        },
    );
    add(Codex, User, CodexToml, home.join(".codex/config.toml"));
    if let Some(dir) = project {
        add(ClaudeCode, Project, McpServers, dir.join(".mcp.json"));
        add(Cursor, Project, McpServers, dir.join(".cursor/mcp.json"));
        add(VsCode, Project, VsCodeServers, dir.join(".vscode/mcp.json"));
        add(
            Zed,
            Project,
            ZedContextServers,
            dir.join(".zed/settings.json"),
        );
        add(
            GeminiCli,
            Project,
            McpServers,
            dir.join(".gemini/settings.json"),
        );
    }
    out
}

/// The client and format of a file given on the command line, from its path and content.
pub fn identify(path: &Path, text: &str) -> (Client, Format) {
    let p = path.to_string_lossy().replace('\\', "/");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let format = guess_format(path, text);
    let client = if name == "claude_desktop_config.json" {
        Client::ClaudeDesktop
    } else if name == ".claude.json"
        || name == ".mcp.json"
        || p.contains("ClaudeCode/")
        || p.contains("claude-code/")
    {
        Client::ClaudeCode
    } else if name == "mcp_config.json" || p.contains("windsurf") {
        Client::Windsurf
    } else if name == "cline_mcp_settings.json" {
        Client::Cline
    } else if p.contains(".cursor/") {
        Client::Cursor
    } else if p.contains(".gemini/") || p.contains("gemini-cli/") {
        Client::GeminiCli
    } else if format == Format::ZedContextServers || p.contains("/zed/") || p.contains(".zed/") {
        Client::Zed
    } else if format == Format::CodexToml {
        Client::Codex
    } else if matches!(format, Format::VsCodeServers | Format::VsCodeSettings) {
        Client::VsCode
    } else {
        Client::ClaudeDesktop
    };
    (client, format)
}

/// The format a file given on the command line most likely has, from its name and content.
pub fn guess_format(path: &Path, text: &str) -> Format {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".toml") {
        return Format::CodexToml;
    }
    if text.contains("\"context_servers\"") {
        return Format::ZedContextServers;
    }
    if name == ".claude.json" {
        return Format::ClaudeCodeUser;
    }
    if text.contains("\"mcpServers\"") {
        return Format::McpServers;
    }
    if text.contains("\"mcp.servers\"") || text.contains("\"mcp\"") && name == "settings.json" {
        return Format::VsCodeSettings;
    }
    if text.contains("\"servers\"") {
        return Format::VsCodeServers;
    }
    Format::McpServers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(home: &str) -> Platform {
        Platform {
            os: Os::Linux,
            home: home.into(),
            xdg_config_home: None,
            appdata: None,
            program_data: None,
            root: "/".into(),
        }
    }

    #[test]
    fn every_client_has_a_user_location_on_every_os() {
        for os in [Os::Linux, Os::MacOs, Os::Windows] {
            let p = Platform {
                os,
                appdata: Some("C:/Users/u/AppData/Roaming".into()),
                ..linux("/home/u")
            };
            let locs = locations(&p, None);
            for c in Client::ALL {
                assert!(
                    locs.iter().any(|l| l.client == c && l.scope == Scope::User),
                    "{c} on {os:?}"
                );
            }
        }
    }

    #[test]
    fn known_paths() {
        let locs = locations(&linux("/home/u"), Some(Path::new("/src/app")));
        let has = |p: &str| locs.iter().any(|l| l.path == Path::new(p));
        assert!(has("/home/u/.config/Claude/claude_desktop_config.json"));
        assert!(has("/home/u/.cursor/mcp.json"));
        assert!(has("/home/u/.config/Code/User/mcp.json"));
        assert!(has("/home/u/.codex/config.toml"));
        assert!(has("/etc/claude-code/managed-mcp.json"));
        assert!(has("/src/app/.vscode/mcp.json"));
        let mac = Platform {
            os: Os::MacOs,
            ..linux("/Users/u")
        };
        assert!(locations(&mac, None).iter().any(|l| l.path
            == Path::new(
                "/Users/u/Library/Application Support/Claude/claude_desktop_config.json"
            )));
    }

    #[test]
    fn client_names_round_trip() {
        for c in Client::ALL {
            assert_eq!(Client::from_name(c.name()), Some(c));
        }
        assert_eq!(Client::from_name("emacs"), None);
    }
}
