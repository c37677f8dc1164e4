#!/usr/bin/with-contenv bashio
# shellcheck shell=bash
# Starts `teams-presence serve` in the Home Assistant add-on. The add-on's options become
# settings (environment variables named like the README's settings table); MQTT comes from
# Home Assistant's broker through the Supervisor's services API unless mqtt_url is set.
# Values are never logged: only which settings are set.
set -euo pipefail

# Only the Supervisor's ingress proxy (172.30.32.2 on the hassio network) may open the status
# page without a token: Home Assistant has authenticated the person. Other add-ons on the same
# network reach the port from other addresses and get 401.
export INGRESS_PROXY=172.30.32.2

# option name -> setting name
declare -A SETTINGS=(
  [azure_client_id]=AZURE_CLIENT_ID
  [azure_tenant_id]=AZURE_TENANT_ID
  [allowed_users]=ALLOWED_USERS
  [hue_bridge]=HUE_BRIDGE
  [hue_application_key]=HUE_APPLICATION_KEY
  [hue_targets]=HUE_TARGETS
  [busylight]=BUSYLIGHT
  [mqtt_url]=MQTT_URL
  [mqtt_username]=MQTT_USERNAME
  [mqtt_password]=MQTT_PASSWORD
  [mqtt_topic_prefix]=MQTT_TOPIC_PREFIX
)
for option in "${!SETTINGS[@]}"; do
  if bashio::config.has_value "$option"; then
    export "${SETTINGS[$option]}=$(bashio::config "$option")"
    bashio::log.info "${SETTINGS[$option]} is set"
  fi
done
RUST_LOG="$(bashio::config 'log_level' 'info')"
export RUST_LOG

if [ -z "${MQTT_URL:-}" ] && bashio::services.available mqtt; then
  scheme=mqtt
  if bashio::var.true "$(bashio::services mqtt ssl)"; then scheme=mqtts; fi
  MQTT_URL="${scheme}://$(bashio::services mqtt host):$(bashio::services mqtt port)"
  MQTT_USERNAME="$(bashio::services mqtt username)"
  MQTT_PASSWORD="$(bashio::services mqtt password)"
  export MQTT_URL MQTT_USERNAME MQTT_PASSWORD
  bashio::log.info "MQTT: Home Assistant's broker"
fi

# serve keeps its SQLite store, generated keys and admin token in /data (the add-on's own
# persistent folder, in Home Assistant's backups). The ingress port is the only one.
exec /usr/bin/teams-presence serve --listen "0.0.0.0:$(bashio::addon.ingress_port)" --data-dir /data
