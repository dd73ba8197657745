/** @odoo-module **/

import { registry } from "@web/core/registry";
import { screenshotStep } from "@whatsapp_business/../tests/tours/screenshot";

/*
 * Browser tours of whatsapp_business, run by whatsapp_business/tests/test_tours.py.
 * The Graph API is mocked on the server side: no request leaves the test.
 */

const ACCOUNT_NAME = "Lyon agency";
const PHONE_NUMBER_ID = "109000000000777";
const WABA_ID = "104000000000777";
const MESSAGE_BODY = "Hello Amélie, your quote is ready. Can we call you tomorrow?";

// Plain steps instead of web_tour's stepUtils, whose module moved between Odoo 18
// and 19: the addon serves both. Same triggers as stepUtils in community.
const OPEN_CRM_STEPS = [
    {
        content: "Open the apps menu",
        trigger: ".o_navbar_apps_menu button:enabled",
        run: "click",
    },
    {
        content: "Open the CRM app",
        trigger: '.o_app[data-menu-xmlid="crm.crm_menu_root"]',
        run: "click",
    },
];
const SAVE_FORM_STEPS = [
    {
        content: "Save the form",
        trigger: ".o_form_button_save:enabled",
        run: "click",
    },
    {
        content: "Wait until it is saved",
        trigger: ".o_form_readonly, .o_form_saved",
    },
];

registry.category("web_tour.tours").add("whatsapp_business_admin_account_tour", {
    url: "/odoo",
    steps: () => [
        ...OPEN_CRM_STEPS,
        {
            content: "Open the Configuration menu",
            trigger: ".o_main_navbar [data-menu-xmlid='crm.crm_menu_config']",
            run: "click",
        },
        {
            content: "Open WhatsApp > Accounts",
            trigger: ".o-dropdown--menu [data-menu-xmlid='whatsapp_business.whatsapp_account_menu']",
            run: "click",
        },
        {
            content: "Create an account",
            trigger: ".o_list_view .o_list_button_add",
            run: "click",
        },
        {
            content: "Name the account",
            trigger: ".o_form_view .o_field_widget[name=name] input",
            run: `edit ${ACCOUNT_NAME}`,
        },
        {
            content: "Enter the phone number id",
            trigger: ".o_field_widget[name=phone_number_id] input",
            run: `edit ${PHONE_NUMBER_ID}`,
        },
        {
            content: "Enter the business account id",
            trigger: ".o_field_widget[name=waba_id] input",
            run: `edit ${WABA_ID}`,
        },
        {
            content: "Paste the access token (a password input)",
            trigger: ".o_field_widget[name=access_token] input[type=password]",
            run: "edit EAAtour-permanent-token",
        },
        {
            content: "Paste the app secret (a password input)",
            trigger: ".o_field_widget[name=app_secret] input[type=password]",
            run: "edit tour-app-secret",
        },
        ...SAVE_FORM_STEPS,
        {
            content: "The access token is stored",
            trigger: ".o_field_widget[name=access_token_set] input:checked",
        },
        {
            content: "The app secret is stored",
            trigger: ".o_field_widget[name=app_secret_set] input:checked",
        },
        {
            content: "Test the connection",
            trigger: ".o_statusbar_buttons button[name=action_test_connection]",
            run: "click",
        },
        {
            content: "A success notification gives the number Meta reports",
            trigger:
                ".o_notification:has(.o_notification_bar.bg-success)" +
                ":contains('Connected to +1 555-010-0001')",
        },
        {
            content: "The form is reloaded: the account is connected",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains('Connected')",
        },
        {
            // Read back from the server: the write-only inputs must come back empty.
            content: "The reloaded form does not show the secrets",
            trigger: ".o_field_widget[name=access_token_set]:has(input:checked)",
            run() {
                for (const name of ["access_token", "app_secret"]) {
                    const input = document.querySelector(`.o_field_widget[name=${name}] input`);
                    if (!input || input.value) {
                        throw new Error(`The ${name} input is missing or shows a value`);
                    }
                }
            },
        },
        {
            content: "Open the Health tab",
            trigger: ".o_notebook .nav-link[name=health]",
            run: "click",
        },
        {
            content: "The health fields come from the phone number info",
            trigger: ".o_field_widget[name=verified_name]:contains('Agency A')",
        },
        {
            content: "The quality rating is shown",
            trigger: ".o_field_widget[name=quality_rating]:contains('GREEN')",
        },
        screenshotStep("account_health", ".o_form_view .o_form_statusbar", { block: "start" }),
        {
            content: "Open the Webhook tab",
            trigger: ".o_notebook .nav-link[name=webhook]",
            run: "click",
        },
        {
            content: "The callback URL ends with the account's secret webhook key",
            trigger: ".o_field_widget[name=webhook_url]:contains('/whatsapp/webhook/')",
        },
        screenshotStep("account_webhook", ".o_form_view .o_form_statusbar", {
            block: "start",
            closeNotifications: true,
        }),
        {
            // Headless Chromium refuses clipboard writes (no user permission):
            // record what the widget copies instead.
            content: "Record what the copy button writes to the clipboard",
            trigger: ".o_field_widget[name=webhook_url] .o_clipboard_button",
            run() {
                Object.defineProperty(navigator.clipboard, "writeText", {
                    configurable: true,
                    value: async (text) => {
                        window.whatsappBusinessCopiedText = text;
                    },
                });
            },
        },
        {
            content: "Copy the callback URL",
            trigger: ".o_field_widget[name=webhook_url] .o_clipboard_button",
            run: "click",
        },
        {
            content: "The copy is confirmed, with the full callback URL",
            trigger: ".o-tooltip:contains('Copied')",
            run() {
                const shown = document
                    .querySelector(".o_field_widget[name=webhook_url] span")
                    .textContent.trim();
                const copied = window.whatsappBusinessCopiedText || "";
                if (!/^https?:\/\/.+\/whatsapp\/webhook\/[\w-]{20,}$/.test(copied)) {
                    throw new Error(`Unexpected copied webhook URL: ${copied}`);
                }
                if (copied !== shown) {
                    throw new Error(`Copied ${copied} but the form shows ${shown}`);
                }
            },
        },
    ],
});

registry.category("web_tour.tours").add("whatsapp_business_salesperson_tour", {
    url: "/odoo",
    steps: () => [
        ...OPEN_CRM_STEPS,
        {
            content: "Open the opportunity",
            trigger: ".o_kanban_record:contains('Roof repair')",
            run: "click",
        },
        {
            content: "The opportunity form is open",
            trigger: ".o_control_panel .o_breadcrumb:contains('Roof repair')",
        },
        {
            content: "Click the WhatsApp button",
            trigger: ".o_form_view .o_statusbar_buttons button:contains('WhatsApp')",
            run: "click",
        },
        {
            content: "The composer opens on the contact",
            trigger: ".modal .o_field_widget[name=recipient_name]:contains('Amélie Dupont')",
        },
        {
            content: "The contact wrote today: free text is selected",
            trigger: ".modal .o_field_widget[name=mode] input[data-value=text]:checked",
        },
        {
            content: "Type the message",
            trigger: ".modal .o_field_widget[name=body] textarea",
            run: `edit ${MESSAGE_BODY}`,
        },
        screenshotStep("composer", ".modal .o_field_widget[name=body] textarea"),
        {
            content: "Send",
            trigger: ".modal-footer button[name=action_send]",
            run: "click",
        },
        {
            content: "The message is queued",
            trigger: ".o_notification:contains('1 message(s) queued for sending.')",
        },
        {
            content: "The composer is closed",
            trigger: "body:not(:has(.modal))",
        },
        {
            content: "The message is in the chatter of the opportunity, queued",
            trigger:
                ".o-mail-Message .o_whatsapp_message.o_whatsapp_state_queued" +
                ":contains('your quote is ready')",
        },
        screenshotStep("lead_chatter", ".o-mail-Message:has(.o_whatsapp_message)"),
    ],
});
