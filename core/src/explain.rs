//! Human explanations of every refusal, for the sender and for the administrator,
//! in English, Ukrainian, Polish and Brazilian Portuguese.
//!
//! Every text names the enhanced status code (such as `5.7.750`) so a reader can
//! search for it. All texts are static UTF-8 strings; nothing here allocates.

use crate::Reason;

/// Languages of the explanations and NDRs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Lang {
    /// English (`en`).
    En = 0,
    /// Ukrainian (`uk`).
    Uk = 1,
    /// Polish (`pl`).
    Pl = 2,
    /// Brazilian Portuguese (`pt-BR`).
    PtBr = 3,
}

impl Lang {
    /// Every language, in numeric order.
    pub const ALL: [Lang; 4] = [Lang::En, Lang::Uk, Lang::Pl, Lang::PtBr];

    /// Parses a language tag: `"en"`, `"en-US"`, `"uk"`, `"uk-UA"`, `"pl"`, `"pl-PL"`,
    /// `"pt-BR"`, `"pt_br"`, `"pt"`, ... Case-insensitive; `-` or `_` separate subtags;
    /// the region and other subtags are ignored (any `pt` tag maps to [`Lang::PtBr`],
    /// the only Portuguese there is). Unknown or malformed tags give `None`.
    #[must_use]
    pub fn parse(tag: &str) -> Option<Lang> {
        let tag = tag.trim();
        let mut parts = tag.split(['-', '_']);
        let primary = parts.next()?;
        // Every further subtag must be 1..=8 ASCII alphanumerics (BCP 47 shape).
        for sub in parts {
            if sub.is_empty() || sub.len() > 8 || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
        }
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("uk") {
            Some(Lang::Uk)
        } else if primary.eq_ignore_ascii_case("pl") {
            Some(Lang::Pl)
        } else if primary.eq_ignore_ascii_case("pt") {
            Some(Lang::PtBr)
        } else {
            None
        }
    }

    /// The canonical tag: `"en"`, `"uk"`, `"pl"` or `"pt-BR"`.
    #[must_use]
    pub const fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Uk => "uk",
            Lang::Pl => "pl",
            Lang::PtBr => "pt-BR",
        }
    }

    /// The language for its numeric value (`lang as u8`).
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Lang> {
        match v {
            0 => Some(Lang::En),
            1 => Some(Lang::Uk),
            2 => Some(Lang::Pl),
            3 => Some(Lang::PtBr),
            _ => None,
        }
    }
}

/// Who reads the explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Audience {
    /// The person whose message was refused: *why did I get this?*
    Sender = 0,
    /// The tenant's administrator: *what can I do?*
    Admin = 1,
}

impl Audience {
    /// Parses `"sender"` (also `"user"`) or `"admin"` (also `"administrator"`),
    /// case-insensitive. Anything else gives `None`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Audience> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("sender") || s.eq_ignore_ascii_case("user") {
            Some(Audience::Sender)
        } else if s.eq_ignore_ascii_case("admin") || s.eq_ignore_ascii_case("administrator") {
            Some(Audience::Admin)
        } else {
            None
        }
    }

    /// The canonical name: `"sender"` or `"admin"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Audience::Sender => "sender",
            Audience::Admin => "admin",
        }
    }

    /// The audience for its numeric value (`audience as u8`).
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Audience> {
        match v {
            0 => Some(Audience::Sender),
            1 => Some(Audience::Admin),
            _ => None,
        }
    }
}

/// The explanation text for a reason, language and audience: two to four sentences,
/// naming the enhanced status code. Never empty.
#[must_use]
pub fn explain(reason: Reason, lang: Lang, audience: Audience) -> &'static str {
    match lang {
        Lang::En => en(reason, audience),
        Lang::Uk => uk(reason, audience),
        Lang::Pl => pl(reason, audience),
        Lang::PtBr => pt_br(reason, audience),
    }
}

/// A one-line title for the reason in that language ("Message not delivered: ..."),
/// suitable as an NDR subject. Never empty; ASCII only for [`Lang::En`].
#[must_use]
pub fn title(reason: Reason, lang: Lang) -> &'static str {
    use Reason as R;
    match lang {
        Lang::En => match reason {
            R::InvalidSender => "Message not delivered: invalid sender address",
            R::Unattributed => "Message not delivered: sender could not be attributed",
            R::TenantThreshold => "Message not delivered: organisation sending limit exceeded",
            R::TenantLapsed => "Message not delivered: subscription lapsed",
            R::LowReputationIp => "Message not delivered: sending IP address not accepted",
            R::UnregisteredDomain => "Message not delivered: sending domain not registered",
        },
        Lang::Uk => match reason {
            R::InvalidSender => "Лист не доставлено: недійсна адреса відправника",
            R::Unattributed => "Лист не доставлено: не вдалося визначити організацію відправника",
            R::TenantThreshold => "Лист не доставлено: перевищено ліміт надсилання організації",
            R::TenantLapsed => "Лист не доставлено: термін дії передплати минув",
            R::LowReputationIp => "Лист не доставлено: IP-адресу відправника не прийнято",
            R::UnregisteredDomain => "Лист не доставлено: домен відправника не зареєстровано",
        },
        Lang::Pl => match reason {
            R::InvalidSender => "Wiadomość nie została dostarczona: nieprawidłowy adres nadawcy",
            R::Unattributed => {
                "Wiadomość nie została dostarczona: nie ustalono organizacji nadawcy"
            }
            R::TenantThreshold => {
                "Wiadomość nie została dostarczona: przekroczono limit wysyłania organizacji"
            }
            R::TenantLapsed => "Wiadomość nie została dostarczona: subskrypcja wygasła",
            R::LowReputationIp => {
                "Wiadomość nie została dostarczona: adres IP nadawcy nie jest akceptowany"
            }
            R::UnregisteredDomain => {
                "Wiadomość nie została dostarczona: domena nadawcy nie jest zarejestrowana"
            }
        },
        Lang::PtBr => match reason {
            R::InvalidSender => "Mensagem não entregue: endereço do remetente inválido",
            R::Unattributed => {
                "Mensagem não entregue: não foi possível identificar a organização do remetente"
            }
            R::TenantThreshold => "Mensagem não entregue: limite de envio da organização excedido",
            R::TenantLapsed => "Mensagem não entregue: assinatura expirada",
            R::LowReputationIp => "Mensagem não entregue: endereço IP de envio não aceito",
            R::UnregisteredDomain => "Mensagem não entregue: domínio do remetente não registrado",
        },
    }
}

fn en(reason: Reason, audience: Audience) -> &'static str {
    use Audience::{Admin, Sender};
    use Reason as R;
    match (reason, audience) {
        (R::InvalidSender, Sender) => {
            "Your message was rejected with 5.1.7 because the envelope sender address \
             (MAIL FROM) could not be parsed, so it was not delivered to any recipient. \
             If you changed nothing, your mail program or server may be misconfigured; \
             forward this report to your administrator."
        }
        (R::InvalidSender, Admin) => {
            "To resolve 5.1.7, fix the envelope sender (MAIL FROM) of the sending system: \
             it must be a valid address such as user@example.com, with a domain and without \
             spaces or stray brackets. Check the configuration of the application, device or \
             server that submitted the message, then send it again."
        }
        (R::Unattributed, Sender) => {
            "Your message was rejected with 5.7.64 because the mail service could not tell \
             which organisation it belongs to, so it refused to relay it. This usually happens \
             when mail comes from a server or device that is not set up to send for your \
             organisation. Forward this report to your administrator."
        }
        (R::Unattributed, Admin) => {
            "To resolve 5.7.64, make outgoing mail attributable to your organisation: configure \
             a connector that recognises your server by a TLS certificate whose domain is one \
             of your accepted domains or by your public IP range, or have the device or \
             application authenticate with SMTP AUTH. Then check that the envelope sender uses \
             one of your accepted domains."
        }
        (R::TenantThreshold, Sender) => {
            "Your message was rejected with 5.7.705 because your organisation has recently sent \
             too much spam or bulk mail, and its outgoing mail is blocked for now. This one \
             message is not the only cause. Contact your administrator; mail will flow again \
             once the block is lifted."
        }
        (R::TenantThreshold, Admin) => {
            "To resolve 5.7.705, find the source of the spam: look for compromised accounts \
             (reset passwords, enable multi-factor authentication, remove unfamiliar forwarding \
             rules), for recently created or unusual connectors, and for an on-premises server \
             or application relaying spam through your organisation. Once the source is cleaned \
             up, ask the service operator to release the block."
        }
        (R::TenantLapsed, Sender) => {
            "Your message was rejected with 5.7.705 because your organisation's subscription \
             has lapsed, so the service no longer sends its mail. Contact your administrator or \
             whoever manages the subscription."
        }
        (R::TenantLapsed, Admin) => {
            "To resolve 5.7.705 for a lapsed subscription, renew or reactivate the \
             subscription. Sending resumes by itself once the renewal has synchronised, which \
             can take a while; if mail is still refused after that delay, contact the service \
             operator."
        }
        (R::LowReputationIp, Sender) => {
            "Your message was rejected with 5.7.708 because it was sent from an IP address with \
             a poor reputation, and the service does not accept your organisation's mail from \
             that address. Forward this report to your administrator."
        }
        (R::LowReputationIp, Admin) => {
            "To resolve 5.7.708, send from another IP address that is not on the low-reputation \
             list, or ask the service operator for a temporary IP exception for your range, for \
             example until your licences are bought. Also check that this IP really is yours \
             and is not being used to relay spam."
        }
        (R::UnregisteredDomain, Sender) => {
            "Your message was rejected with 5.7.750 because your organisation has sent too much \
             mail from domains it has not registered with the service, so sending from \
             unregistered domains is blocked. Contact your administrator."
        }
        (R::UnregisteredDomain, Admin) => {
            "To resolve 5.7.750, add every domain you send from as an accepted domain and \
             complete its validation. If mail passes through an on-premises server, send it \
             through a certificate connector whose certificate domain is accepted. Also check \
             forwarding, as forwarded mail often keeps a foreign sender domain; if the block \
             remains, ask the operator to release it."
        }
    }
}

fn uk(reason: Reason, audience: Audience) -> &'static str {
    use Audience::{Admin, Sender};
    use Reason as R;
    match (reason, audience) {
        (R::InvalidSender, Sender) => {
            "Ваш лист відхилено з кодом 5.1.7, бо адресу відправника в конверті (MAIL FROM) \
             не вдалося розібрати, тож його не доставлено жодному одержувачу. Якщо ви нічого \
             не змінювали, можливо, неправильно налаштовано вашу поштову програму чи сервер; \
             перешліть цей звіт адміністраторові."
        }
        (R::InvalidSender, Admin) => {
            "Щоб усунути помилку 5.1.7, виправте адресу відправника в конверті (MAIL FROM), \
             яку використовує система-відправник: це має бути правильна адреса на кшталт \
             user@example.com, з доменом, без пробілів і зайвих дужок. Перевірте налаштування \
             програми, пристрою чи сервера, що надіслали лист, і надішліть його повторно."
        }
        (R::Unattributed, Sender) => {
            "Ваш лист відхилено з кодом 5.7.64, бо поштовий сервіс не зміг визначити, якій \
             організації він належить, і тому відмовився його пересилати. Зазвичай так буває, \
             коли лист надходить із сервера чи пристрою, не налаштованого для надсилання від \
             імені вашої організації. Перешліть цей звіт адміністраторові."
        }
        (R::Unattributed, Admin) => {
            "Щоб усунути помилку 5.7.64, зробіть так, щоб вихідну пошту можна було пов'язати з \
             вашою організацією: налаштуйте конектор, який розпізнає ваш сервер за \
             TLS-сертифікатом із прийнятим доменом або за вашим публічним діапазоном \
             IP-адрес, або увімкніть для пристрою чи програми автентифікацію SMTP AUTH. Потім \
             перевірте, що адреса відправника в конверті належить до одного з ваших прийнятих \
             доменів."
        }
        (R::TenantThreshold, Sender) => {
            "Ваш лист відхилено з кодом 5.7.705, бо ваша організація останнім часом надіслала \
             забагато спаму або масових розсилок, і її вихідну пошту тимчасово заблоковано. \
             Причина не лише в цьому листі. Зверніться до адміністратора: пошта знову \
             надсилатиметься, щойно блокування знімуть."
        }
        (R::TenantThreshold, Admin) => {
            "Щоб усунути помилку 5.7.705, знайдіть джерело спаму: перевірте, чи не зламано \
             облікові записи (змініть паролі, увімкніть багатофакторну автентифікацію, \
             видаліть незнайомі правила переадресації), чи немає нещодавно створених або \
             незвичних конекторів і чи не пересилає спам через вашу організацію локальний \
             сервер або програма. Усунувши джерело, попросіть оператора сервісу зняти \
             блокування."
        }
        (R::TenantLapsed, Sender) => {
            "Ваш лист відхилено з кодом 5.7.705, бо термін дії передплати вашої організації \
             минув, тож сервіс більше не надсилає її пошту. Зверніться до адміністратора або \
             до того, хто керує передплатою."
        }
        (R::TenantLapsed, Admin) => {
            "Щоб усунути помилку 5.7.705 через прострочену передплату, поновіть або повторно \
             активуйте її. Надсилання відновиться автоматично після синхронізації поновлення, \
             що може тривати деякий час; якщо й після цього пошту відхиляють, зверніться до \
             оператора сервісу."
        }
        (R::LowReputationIp, Sender) => {
            "Ваш лист відхилено з кодом 5.7.708, бо його надіслано з IP-адреси з поганою \
             репутацією, а сервіс не приймає пошту вашої організації з цієї адреси. Перешліть \
             цей звіт адміністраторові."
        }
        (R::LowReputationIp, Admin) => {
            "Щоб усунути помилку 5.7.708, надсилайте пошту з іншої IP-адреси, якої немає в \
             списку адрес із низькою репутацією, або попросіть оператора сервісу про тимчасовий \
             виняток для вашого діапазону IP-адрес, наприклад до придбання ліцензій. Також \
             перевірте, що ця IP-адреса справді ваша і не використовується для пересилання \
             спаму."
        }
        (R::UnregisteredDomain, Sender) => {
            "Ваш лист відхилено з кодом 5.7.750, бо ваша організація надіслала забагато пошти \
             з доменів, не зареєстрованих у сервісі, тому надсилання з незареєстрованих доменів \
             заблоковано. Зверніться до адміністратора."
        }
        (R::UnregisteredDomain, Admin) => {
            "Щоб усунути помилку 5.7.750, додайте кожен домен, з якого надсилаєте пошту, як \
             прийнятий домен і завершіть його перевірку. Якщо пошта проходить через локальний \
             сервер, надсилайте її через конектор із сертифікатом, домен якого прийнято. Також \
             перевірте переадресацію, бо переслані листи часто зберігають чужий домен \
             відправника; якщо блокування лишається, попросіть оператора його зняти."
        }
    }
}

fn pl(reason: Reason, audience: Audience) -> &'static str {
    use Audience::{Admin, Sender};
    use Reason as R;
    match (reason, audience) {
        (R::InvalidSender, Sender) => {
            "Twoja wiadomość została odrzucona z kodem 5.1.7, ponieważ nie udało się odczytać \
             adresu nadawcy w kopercie (MAIL FROM), więc nie trafiła do żadnego odbiorcy. \
             Jeśli niczego nie zmieniano, program pocztowy lub serwer może być źle \
             skonfigurowany; przekaż ten raport administratorowi."
        }
        (R::InvalidSender, Admin) => {
            "Aby usunąć błąd 5.1.7, popraw adres nadawcy w kopercie (MAIL FROM) używany przez \
             system wysyłający: musi to być poprawny adres, np. user@example.com, z domeną, bez \
             spacji i zbędnych nawiasów. Sprawdź konfigurację aplikacji, urządzenia lub \
             serwera, który wysłał wiadomość, a następnie wyślij ją ponownie."
        }
        (R::Unattributed, Sender) => {
            "Twoja wiadomość została odrzucona z kodem 5.7.64, ponieważ usługa pocztowa nie \
             mogła ustalić, do której organizacji należy, i odmówiła jej przekazania. Zwykle \
             dzieje się tak, gdy poczta pochodzi z serwera lub urządzenia, które nie jest \
             skonfigurowane do wysyłania w imieniu Twojej organizacji. Przekaż ten raport \
             administratorowi."
        }
        (R::Unattributed, Admin) => {
            "Aby usunąć błąd 5.7.64, zadbaj o to, by pocztę wychodzącą dało się przypisać do \
             Twojej organizacji: skonfiguruj łącznik, który rozpoznaje serwer po certyfikacie \
             TLS z zaakceptowaną domeną lub po publicznym zakresie adresów IP, albo włącz dla \
             urządzenia lub aplikacji uwierzytelnianie SMTP AUTH. Następnie sprawdź, czy adres \
             nadawcy w kopercie używa jednej z zaakceptowanych domen."
        }
        (R::TenantThreshold, Sender) => {
            "Twoja wiadomość została odrzucona z kodem 5.7.705, ponieważ Twoja organizacja \
             wysłała ostatnio zbyt dużo spamu lub poczty masowej i jej poczta wychodząca jest \
             tymczasowo zablokowana. Przyczyną nie jest wyłącznie ta jedna wiadomość. \
             Skontaktuj się z administratorem; poczta znów będzie wysyłana po zdjęciu blokady."
        }
        (R::TenantThreshold, Admin) => {
            "Aby usunąć błąd 5.7.705, znajdź źródło spamu: sprawdź, czy konta nie zostały \
             przejęte (zmień hasła, włącz uwierzytelnianie wieloskładnikowe, usuń nieznane \
             reguły przekazywania), czy nie ma niedawno utworzonych lub nietypowych łączników \
             oraz czy lokalny serwer albo aplikacja nie przekazuje spamu przez Twoją \
             organizację. Po usunięciu źródła poproś operatora usługi o zdjęcie blokady."
        }
        (R::TenantLapsed, Sender) => {
            "Twoja wiadomość została odrzucona z kodem 5.7.705, ponieważ subskrypcja Twojej \
             organizacji wygasła i usługa nie wysyła już jej poczty. Skontaktuj się z \
             administratorem lub osobą, która zarządza subskrypcją."
        }
        (R::TenantLapsed, Admin) => {
            "Aby usunąć błąd 5.7.705 spowodowany wygaśnięciem subskrypcji, odnów ją lub \
             ponownie aktywuj. Wysyłanie zostanie wznowione automatycznie po zsynchronizowaniu \
             odnowienia, co może chwilę potrwać; jeśli potem poczta nadal jest odrzucana, \
             skontaktuj się z operatorem usługi."
        }
        (R::LowReputationIp, Sender) => {
            "Twoja wiadomość została odrzucona z kodem 5.7.708, ponieważ wysłano ją z adresu IP \
             o złej reputacji, a usługa nie przyjmuje z tego adresu poczty Twojej organizacji. \
             Przekaż ten raport administratorowi."
        }
        (R::LowReputationIp, Admin) => {
            "Aby usunąć błąd 5.7.708, wysyłaj pocztę z innego adresu IP, którego nie ma na \
             liście adresów o niskiej reputacji, albo poproś operatora usługi o tymczasowy \
             wyjątek dla Twojego zakresu adresów IP, na przykład do czasu zakupu licencji. \
             Sprawdź też, czy ten adres IP rzeczywiście należy do Ciebie i nie służy do \
             przekazywania spamu."
        }
        (R::UnregisteredDomain, Sender) => {
            "Twoja wiadomość została odrzucona z kodem 5.7.750, ponieważ Twoja organizacja \
             wysłała zbyt dużo poczty z domen niezarejestrowanych w usłudze, dlatego wysyłanie \
             z niezarejestrowanych domen zostało zablokowane. Skontaktuj się z \
             administratorem."
        }
        (R::UnregisteredDomain, Admin) => {
            "Aby usunąć błąd 5.7.750, dodaj każdą domenę, z której wysyłasz pocztę, jako \
             domenę zaakceptowaną i dokończ jej weryfikację. Jeśli poczta przechodzi przez \
             serwer lokalny, wysyłaj ją przez łącznik z certyfikatem, którego domena jest \
             zaakceptowana. Sprawdź też przekazywanie poczty, bo przekazane wiadomości często \
             zachowują obcą domenę nadawcy; jeśli blokada nie zniknie, poproś operatora o jej \
             zdjęcie."
        }
    }
}

fn pt_br(reason: Reason, audience: Audience) -> &'static str {
    use Audience::{Admin, Sender};
    use Reason as R;
    match (reason, audience) {
        (R::InvalidSender, Sender) => {
            "Sua mensagem foi rejeitada com o código 5.1.7 porque não foi possível interpretar \
             o endereço do remetente no envelope (MAIL FROM), por isso ela não foi entregue a \
             nenhum destinatário. Se você não alterou nada, seu programa de e-mail ou servidor \
             pode estar mal configurado; encaminhe este relatório ao administrador."
        }
        (R::InvalidSender, Admin) => {
            "Para resolver o erro 5.1.7, corrija o remetente do envelope (MAIL FROM) usado pelo \
             sistema de envio: ele deve ser um endereço válido, como user@example.com, com \
             domínio e sem espaços ou colchetes sobrando. Verifique a configuração do \
             aplicativo, dispositivo ou servidor que enviou a mensagem e envie-a novamente."
        }
        (R::Unattributed, Sender) => {
            "Sua mensagem foi rejeitada com o código 5.7.64 porque o serviço de e-mail não \
             conseguiu identificar a qual organização ela pertence e, por isso, recusou-se a \
             retransmiti-la. Isso costuma acontecer quando o e-mail vem de um servidor ou \
             dispositivo que não está configurado para enviar em nome da sua organização. \
             Encaminhe este relatório ao administrador."
        }
        (R::Unattributed, Admin) => {
            "Para resolver o erro 5.7.64, faça com que o e-mail de saída possa ser atribuído à \
             sua organização: configure um conector que reconheça seu servidor por um \
             certificado TLS cujo domínio seja aceito ou pelo seu intervalo de IPs públicos, ou \
             faça o dispositivo ou aplicativo se autenticar via SMTP AUTH. Depois, verifique se \
             o remetente do envelope usa um dos seus domínios aceitos."
        }
        (R::TenantThreshold, Sender) => {
            "Sua mensagem foi rejeitada com o código 5.7.705 porque sua organização enviou \
             spam ou e-mail em massa demais recentemente, e o envio de e-mails dela está \
             bloqueado por enquanto. A causa não é apenas esta mensagem. Entre em contato com o \
             administrador; o envio voltará a funcionar assim que o bloqueio for removido."
        }
        (R::TenantThreshold, Admin) => {
            "Para resolver o erro 5.7.705, encontre a origem do spam: procure contas \
             comprometidas (redefina senhas, ative a autenticação multifator, remova regras de \
             encaminhamento desconhecidas), conectores incomuns ou criados recentemente e algum \
             servidor local ou aplicativo que esteja retransmitindo spam pela sua organização. \
             Depois de eliminar a origem, peça ao operador do serviço que libere o bloqueio."
        }
        (R::TenantLapsed, Sender) => {
            "Sua mensagem foi rejeitada com o código 5.7.705 porque a assinatura da sua \
             organização expirou e o serviço não envia mais os e-mails dela. Entre em contato \
             com o administrador ou com quem gerencia a assinatura."
        }
        (R::TenantLapsed, Admin) => {
            "Para resolver o erro 5.7.705 causado por assinatura expirada, renove ou reative a \
             assinatura. O envio será retomado automaticamente depois que a renovação for \
             sincronizada, o que pode levar algum tempo; se os e-mails continuarem sendo \
             recusados após esse prazo, entre em contato com o operador do serviço."
        }
        (R::LowReputationIp, Sender) => {
            "Sua mensagem foi rejeitada com o código 5.7.708 porque foi enviada de um endereço \
             IP com má reputação, e o serviço não aceita e-mails da sua organização vindos \
             desse endereço. Encaminhe este relatório ao administrador."
        }
        (R::LowReputationIp, Admin) => {
            "Para resolver o erro 5.7.708, envie a partir de outro endereço IP que não esteja \
             na lista de baixa reputação ou peça ao operador do serviço uma exceção temporária \
             para o seu intervalo de IPs, por exemplo até a compra das licenças. Verifique \
             também se esse IP é realmente seu e não está sendo usado para retransmitir spam."
        }
        (R::UnregisteredDomain, Sender) => {
            "Sua mensagem foi rejeitada com o código 5.7.750 porque sua organização enviou \
             e-mails demais a partir de domínios não registrados no serviço; por isso, o envio \
             a partir de domínios não registrados foi bloqueado. Entre em contato com o \
             administrador."
        }
        (R::UnregisteredDomain, Admin) => {
            "Para resolver o erro 5.7.750, adicione cada domínio usado para envio como domínio \
             aceito e conclua a validação dele. Se o e-mail passa por um servidor local, envie-o \
             por um conector de certificado cujo domínio do certificado seja aceito. Verifique \
             também o encaminhamento, pois mensagens encaminhadas costumam manter um domínio de \
             remetente externo; se o bloqueio continuar, peça ao operador que o libere."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_cyrillic(s: &str) -> bool {
        s.chars().any(|c| ('\u{0400}'..='\u{04FF}').contains(&c))
    }

    #[test]
    fn every_text_is_present_and_names_its_code() {
        for reason in Reason::ALL {
            let code = reason.enhanced_code();
            for lang in Lang::ALL {
                let t = title(reason, lang);
                assert!(!t.trim().is_empty());
                assert!(!t.contains('\n') && !t.contains('\r'));
                for audience in [Audience::Sender, Audience::Admin] {
                    let text = explain(reason, lang, audience);
                    assert!(!text.trim().is_empty(), "{reason:?} {lang:?} {audience:?}");
                    assert!(text.contains(code), "{reason:?} {lang:?} {audience:?}");
                    // No doubled spaces or line breaks from the string continuations.
                    assert!(!text.contains("  ") && !text.contains('\n'));
                    if lang == Lang::Uk {
                        assert!(has_cyrillic(text));
                        assert!(has_cyrillic(t));
                    }
                    if lang != Lang::En {
                        assert_ne!(text, explain(reason, Lang::En, audience));
                        assert_ne!(t, title(reason, Lang::En));
                    }
                }
                assert_ne!(
                    explain(reason, lang, Audience::Sender),
                    explain(reason, lang, Audience::Admin)
                );
            }
        }
        // The lapsed case has its own texts even though the code is shared.
        for lang in Lang::ALL {
            for a in [Audience::Sender, Audience::Admin] {
                assert_ne!(
                    explain(Reason::TenantThreshold, lang, a),
                    explain(Reason::TenantLapsed, lang, a)
                );
            }
        }
    }

    #[test]
    fn english_titles_are_ascii() {
        for reason in Reason::ALL {
            assert!(title(reason, Lang::En).is_ascii());
            assert!(!title(reason, Lang::Uk).is_ascii());
        }
    }

    #[test]
    fn lang_parse() {
        let ok = [
            ("en", Lang::En),
            ("EN", Lang::En),
            ("en-US", Lang::En),
            ("en_gb", Lang::En),
            (" en ", Lang::En),
            ("uk", Lang::Uk),
            ("uk-UA", Lang::Uk),
            ("UK_ua", Lang::Uk),
            ("pl", Lang::Pl),
            ("pl-PL", Lang::Pl),
            ("pt-BR", Lang::PtBr),
            ("pt_br", Lang::PtBr),
            ("PT-br", Lang::PtBr),
            ("pt", Lang::PtBr),
        ];
        for (tag, lang) in ok {
            assert_eq!(Lang::parse(tag), Some(lang), "{tag}");
        }
        for bad in [
            "",
            "e",
            "eng",
            "english",
            "de",
            "ru",
            "ua",
            "en-",
            "-en",
            "en--US",
            "pt-BR!",
            "en-toolongsubtag",
            "pten",
        ] {
            assert_eq!(Lang::parse(bad), None, "{bad}");
        }
        for lang in Lang::ALL {
            assert_eq!(Lang::parse(lang.tag()), Some(lang));
            assert_eq!(Lang::from_u8(lang as u8), Some(lang));
        }
        assert_eq!(Lang::from_u8(4), None);
    }

    #[test]
    fn audience_parse() {
        assert_eq!(Audience::parse("sender"), Some(Audience::Sender));
        assert_eq!(Audience::parse("User"), Some(Audience::Sender));
        assert_eq!(Audience::parse("ADMIN"), Some(Audience::Admin));
        assert_eq!(Audience::parse("administrator"), Some(Audience::Admin));
        assert_eq!(Audience::parse("root"), None);
        assert_eq!(Audience::parse(""), None);
        for a in [Audience::Sender, Audience::Admin] {
            assert_eq!(Audience::parse(a.name()), Some(a));
            assert_eq!(Audience::from_u8(a as u8), Some(a));
        }
        assert_eq!(Audience::from_u8(2), None);
    }
}
